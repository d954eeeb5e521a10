"""P(accept) and channel affinity in arbitration, driven through the pure decision function
with hand-built contact histories: contact fatigue, the channel effect, the preferred
channel, caps and decline pauses staying hard limits, and replay of such decisions."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from core.catalogue import Catalogue
from core.decisioning import DecisioningConfig
from core.scoring.response import ResponseScorer
from core.settings import Settings
from registry.replay import replay
from service.api.schemas import RecommendationRequest
from service.decision.acceptance import (
    FROM_RECORD,
    FROM_RESPONSES,
    PRIOR_RATE,
    PRIOR_STRENGTH,
    channel_response,
)
from service.decision.audit_record import audit_record
from service.decision.contact_policy import ContactEntry, ContactState
from service.decision.outcome import Decision
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup
from tests.support.records import adult
from tests.support.response_models import ConstantResponse, fatigue_model
from tests.support.scorers import FEATURE_SET, FixedScores

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
SETTINGS = Settings()
CONFIG = DecisioningConfig.model_validate(
    {"version": "t", "retention": {"churn_threshold": 0.5, "boost": 10}}
)
FATIGUE = fatigue_model()
DAY = 86_400.0


def entry(kind: str, product: str, channel: str, days_ago: float) -> ContactEntry:
    return ContactEntry(kind, product, channel, NOW.timestamp() - days_ago * DAY)


def shown(product: str, times: int, channel: str = "app") -> list[ContactEntry]:
    """``times`` showings of ``product``, 8 days apart and all older than the 7-day
    impression window: the cap never applies, the fatigue history stays."""
    return [entry("shown", product, channel, 8.0 + 8 * n) for n in range(times)]


def run(
    catalogue: Catalogue,
    history: list[ContactEntry],
    *,
    model: ResponseScorer | None = FATIGUE,
    channel: str = "app",
    overrides: dict[str, float] | None = None,
    record: dict[str, Any] | None = None,
    k: int = 20,
) -> Decision:
    return decide(
        FeatureLookup(record or adult(), FEATURE_SET, None, ContactState(tuple(history))),
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable], overrides or {}),
        churn_model=None,
        k=k,
        now=NOW,
        settings=SETTINGS,
        channel=channel,
        decisioning=CONFIG,
        response_model=model,
    )


def priority_of(decision: Decision, product: str) -> float:
    return next(p.priority for p in decision.priorities if p.product.id == product)


def p_accept_of(decision: Decision, product: str) -> float | None:
    return next(p.p_accept for p in decision.priorities if p.product.id == product)


def ids(decision: Decision) -> list[str]:
    return [o.product.id for o in decision.offers]


def test_every_further_showing_of_an_offer_scores_lower(catalogue: Catalogue) -> None:
    priorities = [
        priority_of(run(catalogue, shown("credit_card", n)), "credit_card") for n in range(4)
    ]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == 4  # strictly: the 4th showing below the 3rd ...
    first, fourth = (run(catalogue, shown("credit_card", n)) for n in (0, 3))
    assert p_accept_of(fourth, "credit_card") < p_accept_of(first, "credit_card") / 2  # type: ignore[operator]
    # Another product's history leaves this one's P(accept) alone (the ignored showings
    # lower the app channel's affinity, for every product alike).
    other = run(catalogue, shown("long_term_deposit", 3))
    assert p_accept_of(other, "credit_card") == p_accept_of(first, "credit_card")
    assert other.acceptance.affinity == pytest.approx(PRIOR_STRENGTH / (3 + PRIOR_STRENGTH))


def test_fatigue_reorders_offers_of_equal_value(catalogue: Catalogue) -> None:
    # credit_card and long_term_deposit are both worth 2.0; the card's propensity is higher
    # (both well above the other products' 0.1).
    scores = {"credit_card": 0.5, "long_term_deposit": 0.45}
    fresh = run(catalogue, [], overrides=scores)
    assert ids(fresh).index("credit_card") < ids(fresh).index("long_term_deposit")
    tired = run(catalogue, shown("credit_card", 3), overrides=scores)
    assert ids(tired).index("long_term_deposit") < ids(tired).index("credit_card")


def test_a_channel_the_customer_ignores_scores_below_one_they_answer_on(
    catalogue: Catalogue,
) -> None:
    # One acceptance in two showings on push; six showings on sms, never taken.
    history = [
        entry("shown", "savings_account", "push", 12),
        entry("accepted", "savings_account", "push", 11),
        entry("shown", "payroll", "push", 10),
        *(entry("shown", "taxes", "sms", 9 + n) for n in range(6)),
    ]
    push, sms = (run(catalogue, history, channel=c) for c in ("push", "sms"))
    # This config weighs every channel 1: the affinity alone makes the gap.
    assert priority_of(push, "credit_card") > priority_of(sms, "credit_card")
    overall = (1 + PRIOR_STRENGTH * PRIOR_RATE) / (8 + PRIOR_STRENGTH)  # 1 of 8 contacts
    push_rate = (1 + PRIOR_STRENGTH * overall) / (2 + PRIOR_STRENGTH)
    assert push.acceptance.affinity == pytest.approx(push_rate / overall)  # 2.10
    assert sms.acceptance.affinity == pytest.approx(PRIOR_STRENGTH / (6 + PRIOR_STRENGTH))
    email = run(catalogue, history, channel="email")  # no history on email: neutral
    assert email.acceptance.affinity == 1.0
    assert (
        priority_of(push, "credit_card")
        > priority_of(email, "credit_card")
        > priority_of(sms, "credit_card")
    )
    # The affinity scales every candidate alike: it never reorders one channel's offers.
    assert ids(push) == ids(sms) == ids(email)


def test_preferred_channel_from_responses_else_the_record(catalogue: Catalogue) -> None:
    answered = [
        entry("shown", "savings_account", "push", 12),
        entry("accepted", "savings_account", "push", 11),
        *(entry("shown", "taxes", "app", 9 + n) for n in range(3)),
    ]
    preferred = run(catalogue, answered).acceptance.preferred
    assert preferred is not None
    assert (preferred.channel, preferred.source) == ("push", FROM_RESPONSES)
    assert preferred.accept_rate == pytest.approx(channel_response(answered).rate("push"))
    ignored = shown("taxes", 3, "app")  # shown, never accepted: the record says
    stated = run(catalogue, ignored, record=adult(preferred_channel="email")).acceptance
    assert stated.preferred is not None
    assert (stated.preferred.channel, stated.preferred.source) == ("email", FROM_RECORD)
    unknown = run(catalogue, [], record=adult(preferred_channel="pigeon")).acceptance
    assert unknown.preferred is None


def test_preferred_channel_reaches_the_answer_without_a_model(catalogue: Catalogue) -> None:
    history = [entry("shown", "taxes", "sms", 3), entry("accepted", "taxes", "sms", 2)]
    decision = run(catalogue, history, model=None)
    request = RecommendationRequest(customer_id="C1", channel="app", k=3)
    body = respond(request, "0" * 32, decision, {})
    assert body["preferred_channel"] == {
        "channel": "sms",
        "source": "responses",
        "accept_rate": pytest.approx(channel_response(history).rate("sms")),
    }


def test_without_a_response_model_the_answer_is_as_before(catalogue: Catalogue) -> None:
    history = [*shown("credit_card", 3), entry("accepted", "taxes", "push", 2)]
    decision = run(catalogue, history, model=None, overrides={"credit_card": 0.3})
    card = next(p for p in decision.priorities if p.product.id == "credit_card")
    assert (card.p_accept, card.channel_affinity) == (None, None)
    assert card.priority == pytest.approx(0.3 * 2.0)  # propensity x value, nothing else
    assert not decision.acceptance.modelled
    assert all("P(accept)" not in r.text for o in decision.offers for r in o.reasons)
    with_model = run(catalogue, history, overrides={"credit_card": 0.3})
    card = next(p for p in with_model.priorities if p.product.id == "credit_card")
    assert card.priority == pytest.approx(0.3 * card.p_accept * card.channel_affinity * 2.0)  # type: ignore[operator]
    trace = next(o for o in with_model.offers if o.product.id == "credit_card").reasons[-1]
    assert "x P(accept) " in trace.text and "x channel affinity " in trace.text


def test_caps_and_decline_pauses_stay_hard_limits(catalogue: Catalogue) -> None:
    certain = ConstantResponse(1.0)  # a model sure of every acceptance
    history = [
        entry("shown", "credit_card", "app", 3),
        entry("declined", "credit_card", "app", 2),  # paused for 30 days
        *(entry("shown", "long_term_deposit", "app", 1 + n) for n in range(3)),  # cap 3
        entry("accepted", "payroll", "app", 1),  # a responsive channel
    ]
    decision = run(catalogue, history, model=certain)
    assert decision.acceptance.affinity is not None and decision.acceptance.affinity > 1
    excluded = {e.product_id: e.rule.value for e in decision.exclusions}
    for product in ("credit_card", "long_term_deposit", "payroll"):
        assert product not in ids(decision)
        assert excluded[product] == "contact_policy"
    assert {p.product.id for p in decision.priorities}.isdisjoint(
        {"credit_card", "long_term_deposit", "payroll"}
    )


def test_a_failing_or_non_finite_model_never_costs_the_answer(catalogue: Catalogue) -> None:
    baseline = run(catalogue, [], model=None)
    broken = run(catalogue, [], model=ConstantResponse(fail=True))
    assert ids(broken) == ids(baseline)
    assert [p.priority for p in broken.priorities] == [p.priority for p in baseline.priorities]
    nan = run(catalogue, [], model=ConstantResponse(math.nan))
    assert nan.offers == [] and nan.priorities == []
    rules = {e.rule.value for e in nan.exclusions}
    assert "no_score" in rules  # recorded, so every product is still accounted for


def test_replay_reproduces_a_decision_the_fatigue_reordered(catalogue: Catalogue) -> None:
    scores = {"credit_card": 0.5, "long_term_deposit": 0.45}
    decision = run(catalogue, shown("credit_card", 3), overrides=scores, k=1)
    assert ids(decision) == ["long_term_deposit"]
    request = RecommendationRequest(customer_id="C1", channel="app", k=1)
    response = respond(request, "0" * 32, decision, {})
    record = audit_record(response, decision, adult(), "C1", "p" * 64)
    assert record["arbitration"]["priorities"][0]["p_accept"] is not None
    assert record["acceptance"]["modelled"] is True
    recommender = FixedScores([p.id for p in catalogue.holdable], scores)
    same = replay([record], recommender, catalogue, SETTINGS.risk_assessment_validity_days)
    assert (same.decisions, same.changed) == (1, 0)
    # Without the recorded factors the replay would pick the card: the factors matter.
    bare = {
        **record,
        "arbitration": {
            "priorities": [
                {k: v for k, v in p.items() if k not in ("p_accept", "channel_affinity")}
                for p in record["arbitration"]["priorities"]
            ]
        },
    }
    moved = replay([bare], recommender, catalogue, SETTINGS.risk_assessment_validity_days)
    assert moved.changed == 1


def test_the_acceptance_history_is_read_from_the_entries_alone() -> None:
    """Counts per channel: a showing not reported still counts once per acceptance."""
    response = channel_response(
        [
            entry("accepted", "taxes", "branch", 1),  # no showing reported
            entry("declined", "funds", "branch", 1),  # not a trial of its own
            entry("shown", "funds", "carrier-pigeon", 1),  # unknown channel: ignored
        ]
    )
    assert set(response.channels) == {"branch"}
    branch = response.channels["branch"]
    assert (branch.shown, branch.accepted) == (1, 1)
    assert response.overall == pytest.approx(
        (1 + PRIOR_STRENGTH * PRIOR_RATE) / (1 + PRIOR_STRENGTH)
    )
    assert response.affinity("branch") > 1 == response.affinity("app")


def test_no_factor_makes_an_unsuitable_product_a_candidate(catalogue: Catalogue) -> None:
    """A C1 customer, a recommender and a response model both sure of the mortgage (R3),
    and a channel the customer always answers on: still only R1 products."""
    history = [entry("shown", "taxes", "app", 3), entry("accepted", "taxes", "app", 2)]
    decision = run(
        catalogue,
        history,
        model=ConstantResponse(1.0),
        overrides={"mortgage": 1.0, "funds": 1.0},
        record=adult(risk_level=1),
    )
    assert decision.offers and all(o.product.risk_level == 1 for o in decision.offers)
    excluded = {e.product_id: e.rule.value for e in decision.exclusions}
    assert excluded["mortgage"] == excluded["funds"] == "suitability"
    assert all(p.product.risk_level == 1 for p in decision.priorities)
