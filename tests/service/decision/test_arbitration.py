"""Arbitration: priority = propensity x value x channel weight x lever (+ retention boost).

Drives the pure decision function with hand-set scores, so every order below can be
worked out by hand from the catalogue's business values and the config in the test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.catalogue import Catalogue
from core.decisioning import (
    DecisioningConfig,
    DecisioningError,
    RetentionConfig,
    load_decisioning,
)
from core.settings import PACKAGE_DIR, Settings
from service.decision.outcome import Decision
from service.decision.recommend import decide
from service.infra.feature_fetch import FeatureLookup
from tests.support.records import adult
from tests.support.scorers import FEATURE_SET, FixedChurn, FixedScores

NOW = datetime.now(UTC)
SETTINGS = Settings()


def config(**changes: Any) -> DecisioningConfig:
    base: dict[str, Any] = {"version": "t", "retention": {"churn_threshold": 0.5, "boost": 10}}
    base.update(changes)
    return DecisioningConfig.model_validate(base)


def run(
    catalogue: Catalogue,
    *,
    churn: float | None = None,
    channel: str = "advisor",
    decisioning: DecisioningConfig | None = None,
    overrides: dict[str, float] | None = None,
    record: dict[str, Any] | None = None,
    k: int = 5,
) -> Decision:
    scorer = FixedScores([p.id for p in catalogue.holdable], overrides or {})
    return decide(
        FeatureLookup(record or adult(), FEATURE_SET, None),
        catalogue=catalogue,
        recommender=scorer,
        churn_model=FixedChurn(churn) if churn is not None else None,
        k=k,
        now=NOW,
        settings=SETTINGS,
        channel=channel,
        decisioning=decisioning or config(),
    )


def ids(decision: Decision) -> list[str]:
    return [o.product.id for o in decision.offers]


def test_priority_is_propensity_times_value_times_context_times_lever(
    catalogue: Catalogue,
) -> None:
    # Same propensity everywhere: value orders (mortgage 4.0, funds/pension 3.0 ...); a
    # lever of 2 on credit_card (value 2.0) lifts it to 4.0 x 0.1 = 0.4, tying the
    # mortgage, which stays first by catalogue order.
    levers = config(levers={"products": {"credit_card": 2.0}})
    decision = run(catalogue, decisioning=levers, k=3)
    assert ids(decision) == ["mortgage", "credit_card", "funds"]
    first = decision.priorities[0]
    assert first.priority == pytest.approx(0.1 * 4.0 * 1.0 * 1.0)
    card = next(p for p in decision.priorities if p.product.id == "credit_card")
    assert (card.lever, card.priority) == (2.0, pytest.approx(0.4))


def test_channel_context_weight_reorders_by_category(catalogue: Catalogue) -> None:
    weighted = config(channels={"advisor": {"weight": 1.0, "categories": {"deposit": 3.0}}})
    decision = run(catalogue, decisioning=weighted, k=2)
    # Deposits x3: long_term_deposit 2.0 x 3 = 6 beats mortgage 4.0.
    assert ids(decision) == ["long_term_deposit", "medium_term_deposit"]
    assert decision.priorities[0].context_weight == 3.0


def test_retention_outranks_cross_sell_at_high_churn_risk(catalogue: Catalogue) -> None:
    # Even a very likely cross-sell (propensity 0.9 x mortgage 4.0 = 3.6) is outranked:
    # retention = 0.8 x 2.5 (deposit_rate_bonus) x boost 10 = 20.
    decision = run(catalogue, churn=0.8, overrides={"mortgage": 0.9}, k=4)
    assert ids(decision) == ["deposit_rate_bonus", "advisor_callback", "fee_waiver", "mortgage"]
    assert decision.retention_eligible
    texts = [r.text for r in decision.offers[0].reasons]
    assert texts[0] == "retention priority: churn risk high"
    assert "retention boost 10" in texts[1]


def test_no_retention_below_the_threshold(catalogue: Catalogue) -> None:
    decision = run(catalogue, churn=0.49, overrides={"mortgage": 0.9}, k=4)
    assert not any(o.product.retention for o in decision.offers)
    assert ids(decision)[0] == "mortgage"
    assert not decision.retention_eligible


def test_retention_at_exactly_the_threshold(catalogue: Catalogue) -> None:
    assert run(catalogue, churn=0.5, k=1).offers[0].product.retention


def test_boost_decides_whether_retention_outranks(catalogue: Catalogue) -> None:
    # Without a boost, retention 0.5 x 2.5 = 1.25 loses to mortgage 0.9 x 4.0 = 3.6.
    weak = config(retention={"churn_threshold": 0.5, "boost": 1.0})
    decision = run(catalogue, churn=0.5, decisioning=weak, overrides={"mortgage": 0.9}, k=2)
    assert ids(decision) == ["mortgage", "deposit_rate_bonus"]


def test_channel_rules_keep_complex_products_on_the_advisor_channel(
    catalogue: Catalogue,
) -> None:
    real = load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue)
    on_app = run(catalogue, channel="app", decisioning=real, k=20)
    on_advisor = run(catalogue, channel="advisor", decisioning=real, k=20)
    off_app = {e.product_id for e in on_app.exclusions if e.rule.value == "channel"}
    assert off_app == {"funds", "mortgage", "guarantees"}  # C3: securities R4 is unsuitable
    assert "loans" in ids(on_app)  # lending R2 is not complex
    assert off_app <= set(ids(on_advisor))
    assert not any(e.rule.value == "channel" for e in on_advisor.exclusions)


def test_arbitration_never_adds_an_unsuitable_product(catalogue: Catalogue) -> None:
    cautious = adult(risk_level=1)
    everything = {p.id: 1.0 for p in catalogue.holdable}
    decision = run(catalogue, churn=0.9, overrides=everything, record=cautious, k=20)
    assert decision.offers
    assert all(o.product.risk_level == 1 for o in decision.offers)
    suitability = {e.product_id for e in decision.exclusions if e.rule.value == "suitability"}
    assert suitability == {p.id for p in catalogue.holdable if p.risk_level > 1}


def test_unknown_names_in_the_config_fail_naming_the_field(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    path = tmp_path / "decisioning.yaml"
    path.write_text(
        "version: '1'\nretention: {churn_threshold: 0.5, boost: 10}\n"
        "levers: {products: {mortage: 1.2}}\nchannels: {fax: {weight: 1}}\n"
    )
    with pytest.raises(DecisioningError) as failure:
        load_decisioning(path, catalogue)
    assert "levers.products.mortage: unknown product" in str(failure.value)
    assert "channels.fax: unknown channel" in str(failure.value)


def test_invalid_values_fail_naming_the_field(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "decisioning.yaml"
    path.write_text("version: '1'\nretention: {churn_threshold: 1.5, boost: 0}\n")
    with pytest.raises(DecisioningError) as failure:
        load_decisioning(path, catalogue)
    assert "retention.churn_threshold" in str(failure.value)
    assert "retention.boost" in str(failure.value)


def test_the_shipped_config_is_valid(catalogue: Catalogue) -> None:
    real = load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue)
    assert real.retention == RetentionConfig(churn_threshold=0.5, boost=10.0)
