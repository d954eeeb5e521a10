"""Precomputed scores (``nbo score recommendations``): the same answers as scoring online.

The batch job scores the live feature set with the served champions (a real MLflow
registry in a temp dir) into a real Redis; the app reads the customer's stored scores in
its one ``EVAL`` while the score set matches its feature set and models, and scores online
otherwise. The audit says which (``scores_source``).
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.decisioning import load_decisioning
from core.precomputed import ModelRef, ScoreSetKeys, current_score_set, encode_scores
from core.pseudonym import pseudonymiser
from core.redis_keys import decisions_key
from core.scoring.base import Reason
from core.settings import Settings
from core.suitability import Rule
from features.online_store import OnlineStore
from registry.client import Registry
from service.app import create_app
from service.decision.recommend import decide
from service.infra.feature_fetch import FeatureLookup
from tests.support.auth import AUTH
from tests.support.decision_cases import ChosenChurn, ChosenScores
from tests.support.records import TODAY, adult, publish_records
from tests.support.served import (  # noqa: F401 (fixtures)
    AS_OF,
    CUSTOMERS,
    ask,
    champion_registry,
    publish_customers,
    served,
)
from training.precompute_scores import PrecomputeError, precompute_scores, served_models

pytestmark = pytest.mark.integration

ASKED = ["C5-RICH", "C1-CAUTIOUS", "C5-EXPIRED-SINCE", "C3-LEAVING", "NOBODY-42"]


def _precompute(settings: Settings, client: redis.Redis, **kwargs: Any) -> Any:
    recommender, churn = served_models(Registry(settings), settings)
    store = OnlineStore.for_settings(client, settings)
    return precompute_scores(client, store, recommender, churn, **kwargs)


def _answers(settings: Settings, client: redis.Redis) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every ``ASKED`` customer's answer (request id dropped) and their audit records."""
    bodies = []
    with TestClient(create_app(settings), headers=AUTH) as http:
        for customer in ASKED:
            body = ask(http, customer, k=5)
            bodies.append({k: v for k, v in body.items() if k != "request_id"})
        assert http.app.state.runtime.audit.flush(timeout=60)  # type: ignore[attr-defined]
    entries = client.xrange(decisions_key(settings.audit_prefix))
    return bodies, [orjson.loads(fields[b"d"]) for _, fields in entries]


def test_precomputed_and_online_give_the_same_answers(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    info = publish_customers(served, redis_client, catalogue)
    online, online_audit = _answers(served, redis_client)
    redis_client.delete(decisions_key(served.audit_prefix))

    scored = _precompute(served, redis_client)
    assert scored.feature_set == info.version and scored.customers == len(CUSTOMERS)
    assert scored.recommender == ModelRef(served.recommender_model_name, 1)
    assert scored.churn == ModelRef(served.churn_model_name, 1)
    precomputed, audit = _answers(served, redis_client)

    assert precomputed == online
    assert [a["scores_source"] for a in online_audit] == ["online"] * 4 + [None]
    assert [a["scores_source"] for a in audit] == ["precomputed"] * 4 + [None]  # unknown: fallback
    for before, after in zip(online_audit, audit, strict=True):
        for field in ("candidate_scores", "exclusions", "arbitration", "churn_risk", "offers"):
            assert after[field] == before[field], field


def test_a_score_set_of_another_feature_set_is_not_used(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_customers(served, redis_client, catalogue)
    scored = _precompute(served, redis_client)
    # A new feature set is published after the scores were computed: they no longer match.
    newer = publish_records(served, redis_client, catalogue, CUSTOMERS, as_of=TODAY)
    assert newer.version != scored.feature_set
    _, audit = _answers(served, redis_client)
    assert [a["scores_source"] for a in audit] == ["online"] * 4 + [None]
    assert all(a["feature_set"]["version"] == newer.version for a in audit[:4])


def test_a_score_set_of_another_model_version_is_not_used(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_customers(served, redis_client, catalogue)
    recommender, churn = served_models(Registry(served), served)
    ref, model = recommender
    store = OnlineStore.for_settings(redis_client, served)
    # Computed by "version 2" of the recommender: the service serves version 1.
    precompute_scores(redis_client, store, (ModelRef(ref.name, 2), model), churn)
    _, audit = _answers(served, redis_client)
    assert [a["scores_source"] for a in audit] == ["online"] * 4 + [None]


def test_an_unreadable_stored_value_is_scored_online(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_customers(served, redis_client, catalogue)
    scored = _precompute(served, redis_client)
    keys = ScoreSetKeys(served.feature_prefix)
    redis_client.set(keys.customer(scored.version, pseudonymiser(served)("C5-RICH")), b"junk")
    _, audit = _answers(served, redis_client)
    assert [a["scores_source"] for a in audit] == ["online"] + ["precomputed"] * 3 + [None]


def test_suitability_is_enforced_on_precomputed_scores(
    settings: Settings, catalogue: Catalogue
) -> None:
    """Stored scores that put every product first change nothing about who may be offered
    what: a C1 (cautious) customer is never offered an R3+ product."""
    ids = [p.id for p in catalogue.holdable]
    model = ChosenScores(ids, [0.0] * len(ids), np.ones(len(ids)))
    record = adult(risk_level=1)
    stored = ScoreSetInfoDouble(ids).decode(
        encode_scores(np.full(len(ids), 10.0), [(j, [0]) for j in range(len(ids))], (0.1, []))
    )
    decision = decide(
        FeatureLookup(record, None, None),
        catalogue=catalogue,
        recommender=model,
        churn_model=ChosenChurn(0.1),
        k=len(ids),
        now=datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC),
        settings=settings,
        channel="app",
        decisioning=load_decisioning(settings.decisioning_path, catalogue),
        precomputed=stored,
    )
    assert decision.scores_source == "precomputed"
    risky = {p.id for p in catalogue.holdable if p.risk_level > 1}
    assert risky and not risky & {o.product.id for o in decision.offers}
    assert not risky & {p.product.id for p in decision.priorities}
    suitability = {e.product_id for e in decision.exclusions if e.rule is Rule.SUITABILITY}
    assert risky - {"current_account"} <= suitability | {e.product_id for e in decision.exclusions}
    assert decision.offers, "the suitable products are still offered"


def ScoreSetInfoDouble(product_ids: list[str]) -> Any:
    """A score-set meta for hand-made values (one reason in its table)."""
    from core.precomputed import ScoreSetInfo

    return ScoreSetInfo(
        version="v",
        feature_set="fs",
        recommender=ModelRef("r", 1),
        churn=ModelRef("c", 1),
        product_ids=tuple(product_ids),
        reasons=(Reason("stored", "a stored reason"),),
        created_at=datetime.now(UTC),
        customers=1,
        top_reasons=len(product_ids),
    )


def test_the_job_refuses_without_a_feature_set_and_writes_nothing(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(PrecomputeError, match="no feature set is published"):
        _precompute(served, redis_client)
    assert list(redis_client.scan_iter(match=f"{key_prefix}*")) == []


def test_a_bad_record_stops_the_job_naming_its_key_and_nothing_is_published(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    info = publish_customers(served, redis_client, catalogue)
    store = OnlineStore.for_settings(redis_client, served)
    bad = store.record_key(info.version, "C3-LEAVING")
    redis_client.set(bad, b"not a record")
    with pytest.raises(PrecomputeError, match=r"\{.+\}: feature record cannot be decoded"):
        _precompute(served, redis_client)
    keys = ScoreSetKeys(served.feature_prefix)
    assert current_score_set(redis_client, keys) is None
    assert list(redis_client.scan_iter(match=f"{keys.prefix}*")) == []


def test_older_score_sets_are_deleted_beyond_keep(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_customers(served, redis_client, catalogue)
    first = _precompute(served, redis_client, keep=1)
    second = _precompute(served, redis_client, keep=1)
    keys = ScoreSetKeys(served.feature_prefix)
    assert current_score_set(redis_client, keys) == second
    assert list(redis_client.scan_iter(match=keys.version_pattern(first.version))) == []
    assert len(list(redis_client.scan_iter(match=keys.version_pattern(second.version)))) == 5
