"""``decide`` with its tables (suitability verdicts, candidate splits, channel and lever
factors, arbitration traces, contact limits, catalogue maps) gives exactly the decision it
gives with every table bypassed - over many random customers of one catalogue and config,
so that most decisions read entries other customers' decisions filled in - and a reload of
the catalogue or the config, or a new day, is never answered from an old entry.

"Bypassed" replaces each table by the computation it keeps (the product-by-product
``exclusion``, a fresh ``ChannelFactors`` per call, ...); the whole ``Decision`` is compared
through its ``repr`` (every field, every float exactly).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.suitability as suitability
import service.decision.arbitration as arbitration
import service.decision.moments as moments_module
import service.decision.recommend as recommend
from core.catalogue import Catalogue, Product
from core.decisioning import ChannelContext, ChannelRule, DecisioningConfig, Levers
from service.decision.acceptance import channel_response
from service.decision.candidates import _offer_candidates
from service.decision.contact_policy import ContactEntry, ContactLimits, ContactState, start_of_day
from service.decision.moments import Moments
from service.decision.outcome import Decision, DegradedReason
from service.infra.feature_fetch import FeatureLookup
from tests.support.decision_cases import ChosenScores
from tests.support.decision_strategies import (
    FEATURE_SET,
    NOW,
    RETENTION,
    SETTINGS,
    records,
    situations,
)
from tests.support.response_models import ConstantResponse

CHANNELS = ("app", "push", "sms", "email", "advisor", "branch")
PROBLEMS = {
    "personal": None,
    "no_model": None,
    "unknown_customer": DegradedReason.UNKNOWN_CUSTOMER,
    "no_feature_set": DegradedReason.NO_FEATURE_SET,
    "store_unavailable": DegradedReason.FEATURE_STORE_UNAVAILABLE,
}
"""The situations' modes (``test_suitability_property.MODES``) as the lookup's problem."""


@contextmanager
def tables_bypassed() -> Iterator[None]:
    """Every table of the decision path replaced by the computation it keeps."""

    def split_product_by_product(
        products: Any, facts: Any, today: date, days: int, catalogue: Any = None
    ) -> Any:
        return suitability.split_suitable(products, facts, today, days)

    def fresh_factors(config: DecisioningConfig, channel: str) -> arbitration.ChannelFactors:
        return arbitration.ChannelFactors(config, channel)

    def trace_factors(value: float, channel: str, context: float, lever: float) -> str:
        return f" x value {value:g} x channel {channel} {context:g} x lever {lever:g}"

    def limits(cls: type[ContactLimits], settings: Any, moments: Any, tier: Any) -> Any:
        return cls.from_settings(settings).for_tier(moments, tier)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recommend, "split_suitable", split_product_by_product)
        patch.setattr(recommend, "offer_candidates", _offer_candidates)
        patch.setattr(arbitration, "channel_factors", fresh_factors)
        patch.setattr(arbitration, "_trace_factors", trace_factors)
        patch.setattr(moments_module, "_treatments_of", moments_module._catalogue_treatments)
        patch.setattr(ContactLimits, "for_request", classmethod(limits))
        yield


@st.composite
def contact_states(draw: st.DrawFn, product_ids: list[str]) -> ContactState:
    """Recent showings, declines and acceptances (some today, some weeks ago)."""
    entries = draw(
        st.lists(
            st.builds(
                ContactEntry,
                st.sampled_from(["shown", "shown", "declined", "accepted"]),
                st.sampled_from(product_ids),
                st.sampled_from(CHANNELS),
                st.floats(NOW.timestamp() - 40 * 86_400, NOW.timestamp()),
            ),
            max_size=8,
        )
    )
    return ContactState(tuple(entries), known=draw(st.booleans()))


def decide(case: dict[str, Any], record: Any, contact: ContactState, now: datetime) -> Decision:
    problem = PROBLEMS[case["mode"]]
    return recommend.decide(
        FeatureLookup(record if problem is None else None, FEATURE_SET, problem, contact),
        catalogue=case["catalogue"],
        recommender=None if case["mode"] == "no_model" else case["scorer"],
        churn_model=case["churn"],
        k=case["k"],
        now=now,
        settings=SETTINGS,
        channel=case["channel"],
        decisioning=case["decisioning"],
        maturity_model=case["outflow"],
        response_model=case["response"],
    )


@st.composite
def banks(draw: st.DrawFn) -> dict[str, Any]:
    """One catalogue and config, and many requests against them."""
    case = draw(situations(moments_first=draw(st.booleans())))
    catalogue: Catalogue = case["catalogue"]
    ids = catalogue.ids
    factors = st.dictionaries(st.sampled_from(["account", "investment"]), st.floats(0.1, 2))
    channels = {
        c: ChannelContext(weight=draw(st.floats(0.1, 2)), categories=draw(factors))
        for c in draw(st.lists(st.sampled_from(CHANNELS), unique=True))
    }
    levers = Levers(products=draw(st.dictionaries(st.sampled_from(ids), st.floats(0.1, 3))))
    rules = [{"name": "invest_advisor", "categories": ["investment"], "channels": ["advisor"]}]
    case["decisioning"] = DecisioningConfig(
        version="t",
        retention=RETENTION,
        channels=channels,
        levers=levers,
        channel_rules=draw(st.sampled_from([(), tuple(rules)])),
        moments=case["moments"],
    )
    case["response"] = draw(st.none() | st.builds(ConstantResponse, st.floats(0, 1)))
    case["requests"] = draw(
        st.lists(
            st.tuples(
                records(ids, draw(st.booleans())),
                contact_states(ids),
                st.sampled_from(CHANNELS),
                st.integers(0, 800),  # days after NOW
            ),
            min_size=1,
            max_size=12,
        )
    )
    return case


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(banks())
def test_decisions_read_from_the_tables_equal_the_ones_worked_out_afresh(
    bank: dict[str, Any],
) -> None:
    for record, contact, channel, days in bank["requests"]:
        case = {**bank, "channel": channel}
        now = NOW + timedelta(days=days)
        cached = decide(case, record, contact, now)
        with tables_bypassed():
            afresh = decide(case, record, contact, now)
        assert repr(cached) == repr(afresh)


def _product(**changes: Any) -> Product:
    base = {"id": "p_fund", "name": "fund", "category": "investment", "risk_level": 2}
    return Product(**{**base, "business_value": 2.0, **changes})


def _bank(product: Product, decisioning: DecisioningConfig | None = None) -> dict[str, Any]:
    catalogue = Catalogue(version="same", products=(product,))
    return {
        "catalogue": catalogue,
        "mode": "personal",
        "scorer": ChosenScores([product.id], [0.5], np.array([0.1])),
        "churn": None,
        "k": 3,
        "channel": "app",
        "decisioning": decisioning or DecisioningConfig(version="same", retention=RETENTION),
        "outflow": None,
        "response": None,
    }


RECORD = {"risk_level": 2, "risk_assessed_on": NOW.date().isoformat(), "age": 40, "held": []}


def test_a_reloaded_catalogue_is_never_answered_from_the_old_ones_entries() -> None:
    """Same version and ids; the new file raised the fund's risk level."""
    before = decide(_bank(_product()), RECORD, ContactState(), NOW)
    after = decide(_bank(_product(risk_level=3)), RECORD, ContactState(), NOW)
    assert [o.product.id for o in before.offers] == ["p_fund"]
    assert after.offers == [] and after.exclusions[0].detail == "R3 above C2"


def test_a_reloaded_config_is_never_answered_from_the_old_ones_entries() -> None:
    """Same version; the new file weighs the app channel and adds a channel rule."""
    plain = DecisioningConfig(version="same", retention=RETENTION)
    weighted = DecisioningConfig(
        version="same", retention=RETENTION, channels={"app": ChannelContext(weight=0.5)}
    )
    rule = ChannelRule(name="funds_advisor", categories=("investment",), channels=("advisor",))
    ruled = weighted.model_copy(update={"channel_rules": (rule,)})
    first = decide(_bank(_product(), plain), RECORD, ContactState(), NOW)
    second = decide(_bank(_product(), weighted), RECORD, ContactState(), NOW)
    third = decide(_bank(_product(), ruled), RECORD, ContactState(), NOW)
    assert first.priorities[0].priority == 0.5 * 1.0 * 2.0 * 1.0 * 1.0 * 1.0
    assert second.priorities[0].context_weight == 0.5
    assert third.offers == [] and third.exclusions[0].rule == "channel"


def test_a_new_day_expires_the_assessment_whatever_was_decided_the_day_before() -> None:
    bank = _bank(_product())
    assessed = {**RECORD, "risk_assessed_on": (NOW.date() - timedelta(days=730)).isoformat()}
    today = decide(bank, assessed, ContactState(), NOW)
    tomorrow = decide(bank, assessed, ContactState(), NOW + timedelta(days=1))
    assert [o.product.id for o in today.offers] == ["p_fund"]
    assert tomorrow.offers == []
    assert tomorrow.exclusions[0].detail == "R2 above no valid assessment"


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
        ),
    )
)
def test_start_of_day_is_the_utc_midnight_of_the_datetime(now: datetime) -> None:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert start_of_day(now) == midnight.timestamp()
    naive = now.astimezone(UTC).replace(tzinfo=None)  # read as local time by both
    local = naive.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert start_of_day(naive) == local.timestamp()


def test_no_contact_history_gives_what_the_counting_gives() -> None:
    """The shortcuts for an empty history: the same values the counting loops give."""
    unknown_channels = (ContactEntry("accepted", "p", "carrier_pigeon", 0.0),)
    assert channel_response(()) == channel_response(unknown_channels)
    assert math.isclose(channel_response(()).overall, 0.1)
    limits = ContactLimits(3, 30, 90, 2)
    summary = ContactState().summary(NOW, limits, "app")
    assert summary == {
        "known": True,
        "impressions_in_window": {},
        "declined": [],
        "accepted": [],
        "shown_today_on_channel": 0,
    }


def test_decision_of_is_the_constructor() -> None:
    decision = decide(_bank(_product()), RECORD, ContactState(), NOW)
    values = {f.name: getattr(decision, f.name) for f in fields(Decision)}
    built = Decision(**values)
    assert decision == built and repr(decision) == repr(built)
    assert list(vars(decision)) == [f.name for f in fields(Decision)]


@given(st.lists(st.sampled_from([0.0, -0.0, 0.25, 0.5, 1e308, math.nan]), min_size=1, max_size=9))
def test_arbitration_orders_highest_first_and_keeps_catalogue_order_on_ties(
    scores: list[float],
) -> None:
    """Ties (0.0 and -0.0 included) in catalogue order; a NaN priority (1e308 x a huge lever
    overflows, then x 0) sorted by the -priority key as before."""
    products = [_product(id=f"p_{i}", category="account") for i in range(len(scores))]
    config = DecisioningConfig(
        version="t", retention=RETENTION, levers=Levers(products={"p_0": 1e308, "p_1": 0.0})
    )
    propensities = {p.id: s for p, s in zip(products, scores, strict=True)}
    ranked = arbitration.arbitrate(products, propensities, Moments(), "app", config)
    placed = [p for p in products if math.isfinite(scores[int(p.id[2:])])]
    expected = sorted(
        [next(r for r in ranked if r.product is p) for p in placed],
        key=lambda item: -item.priority,
    )
    assert [r.product.id for r in ranked] == [r.product.id for r in expected]
