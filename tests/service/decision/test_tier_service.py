"""Tier service levels: per-tier channels and caps from the shipped decisioning config,
tested at the caps; and a maturity treatment served from one Redis read of the record.

Shipped (``core/decisioning.yaml`` ``moments.tiers``): mass - app, push, sms, email, branch,
3 offers per channel and day; affluent - every channel, 5 a day; private - advisor,
branch, email, 5 a day and at most 2 impressions of a product per window. The settings'
defaults (10 a day, 3 impressions) apply to a record without a known tier.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis

from core.catalogue import Catalogue
from core.decisioning import DecisioningConfig, load_decisioning
from core.pseudonym import pseudonymiser
from core.settings import PACKAGE_DIR, Settings
from features.online_store import OnlineStore
from service.api.schemas import EventIn
from service.decision.contact_policy import (
    ContactEntry,
    ContactLimits,
    ContactRead,
    ContactState,
    start_of_day,
)
from service.decision.outcome import Decision
from service.decision.recommend import decide
from service.infra.breaker import CircuitBreaker
from service.infra.event_store import store_event
from service.infra.feature_fetch import FeatureLookup, fetch_features
from service.infra.redis_guard import connect_guarded_async
from tests.support.records import adult, publish_records
from tests.support.redis_monitor import monitored
from tests.support.scorers import FEATURE_SET, FixedScores

NOW = datetime.now(UTC)
SETTINGS = Settings()


@pytest.fixture(scope="module")
def shipped(catalogue: Catalogue) -> DecisioningConfig:
    return load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue)


def shown_today(*products: str, channel: str = "app") -> ContactState:
    """``shown`` events at the start of today's UTC day (inside every window)."""
    at = start_of_day(NOW)
    return ContactState(tuple(ContactEntry("shown", p, channel, at) for p in products))


def run(
    catalogue: Catalogue,
    decisioning: DecisioningConfig,
    tier: str | None,
    contact: ContactState,
    *,
    channel: str = "app",
    k: int = 20,
) -> Decision:
    return decide(
        FeatureLookup(adult(tier=tier), FEATURE_SET, None, contact),
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable], {"credit_card": 0.9}),
        churn_model=None,
        k=k,
        now=NOW,
        settings=SETTINGS,
        channel=channel,
        decisioning=decisioning,
    )


def cap_cuts(decision: Decision) -> list[str]:
    return [e.detail for e in decision.exclusions if e.detail.startswith("daily cap")]


@pytest.mark.parametrize(
    ("tier", "cap"), [("mass", 3), ("affluent", 5), (None, SETTINGS.channel_daily_cap)]
)
def test_daily_cap_per_tier_at_the_cap(
    catalogue: Catalogue, shipped: DecisioningConfig, tier: str | None, cap: int
) -> None:
    # Shown today on the app: other channels' offers do not count.
    elsewhere = shown_today(*["x"] * cap, channel="email")
    assert len(run(catalogue, shipped, tier, elsewhere).offers) == cap
    one_left = shown_today(*["x"] * (cap - 1))
    assert len(run(catalogue, shipped, tier, one_left).offers) == 1
    full = run(catalogue, shipped, tier, shown_today(*["x"] * cap))
    assert full.offers == []
    assert cap_cuts(full)[0] == f"daily cap of {cap} offers on app reached"
    assert full.contact["daily_capacity"] == 0


@pytest.mark.parametrize(("tier", "cap"), [("private", 2), ("affluent", 3), (None, 3)])
def test_impression_cap_per_tier_at_the_cap(
    catalogue: Catalogue, shipped: DecisioningConfig, tier: str | None, cap: int
) -> None:
    # credit_card ranks first (0.9 x 2.0); its impressions were on the app, the request is
    # on advisor, so only the impression cap can remove it.
    below = run(
        catalogue, shipped, tier, shown_today(*["credit_card"] * (cap - 1)), channel="advisor"
    )
    at = run(catalogue, shipped, tier, shown_today(*["credit_card"] * cap), channel="advisor")
    assert below.offers[0].product.id == "credit_card"
    assert "credit_card" not in {o.product.id for o in at.offers}
    details = {e.product_id: e.detail for e in at.exclusions}
    assert details["credit_card"] == f"shown {cap} times in 7 days (cap {cap})"


@pytest.mark.parametrize(
    ("tier", "channel", "served"),
    [
        ("private", "app", False),
        ("private", "advisor", True),
        ("private", "email", True),
        ("mass", "advisor", False),
        ("mass", "app", True),
        ("affluent", "sms", True),
        (None, "advisor", True),
    ],
)
def test_tier_channels(
    catalogue: Catalogue, shipped: DecisioningConfig, tier: str | None, channel: str, served: bool
) -> None:
    decision = run(catalogue, shipped, tier, ContactState(), channel=channel)
    assert bool(decision.offers) == served
    tier_rule = [e for e in decision.exclusions if e.detail.startswith("tier ")]
    if served:
        assert not tier_rule
    else:
        assert tier_rule and all(e.rule.value == "contact_policy" for e in tier_rule)
        assert tier_rule[0].detail.endswith(f"only, not {channel}")


def test_tier_limits_change_caps_not_windows(shipped: DecisioningConfig) -> None:
    base = ContactLimits.from_settings(SETTINGS)
    private = base.for_tier(shipped.moments, "private")
    assert (private.channel_daily_cap, private.max_impressions) == (5, 2)
    assert private.horizon_seconds == base.horizon_seconds  # the read covers every tier
    assert base.for_tier(shipped.moments, None) == base


# -- one Redis round trip -----------------------------------------------------------------


class FixedOutflow:
    def __init__(self, probability: float) -> None:
        self.probability = probability

    def outflow_probability(self, record: object, contract: object, today: object) -> float:
        return self.probability


def test_maturity_treatment_and_tier_cap_from_one_read_script(
    settings: Settings,
    redis_client: redis.Redis,
    redis_url: str,
    key_prefix: str,
    catalogue: Catalogue,
    shipped: DecisioningConfig,
) -> None:
    customer = "C-MATURING"
    due = (NOW.date() + timedelta(days=5)).isoformat()
    deposit = {
        "contract": "ck-1",
        "product": "medium_term_deposit",
        "opened_on": "2025-01-01",
        "maturity_date": due,
        "amount": 30_000.0,
    }
    record = adult(tier="mass", maturities=[deposit])
    info = publish_records(settings, redis_client, catalogue, {customer: record})
    store = OnlineStore.for_settings(redis_client, settings)
    pseudonym = pseudonymiser(settings)(customer)
    for n, product in enumerate(["credit_card", "funds"]):  # 2 of mass's 3 today on the app
        event = EventIn(
            event_id=f"e{n}",
            type="shown",
            customer_id=customer,
            product_id=product,
            request_id="0" * 32,
            channel="app",
            timestamp=NOW,
        )
        store_event(redis_client, settings, event, pseudonym, NOW)
    limits = ContactLimits.from_settings(settings)
    read = ContactRead.for_customer(settings.contact_prefix, pseudonym, NOW, limits)

    async def fetch() -> FeatureLookup:
        reader = connect_guarded_async(settings, CircuitBreaker("redis", 5, 1.0))
        try:
            return await fetch_features(reader, store, info, customer, contact=read)
        finally:
            await reader.aclose()

    lookups: list[FeatureLookup] = []
    with redis.Redis.from_url(redis_url) as watcher:
        seen = monitored(watcher, lambda: lookups.append(asyncio.run(fetch())))
    sent = [c["command"] for c in seen if c["client_type"] != "lua" and key_prefix in c["command"]]
    assert [c.split()[0] for c in sent] == ["EVAL"], (
        sent
    )  # the record (contracts included) and contact state: one call

    decision = decide(
        lookups[0],
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable]),
        churn_model=None,
        k=3,
        now=NOW,
        settings=settings,
        channel="app",
        decisioning=shipped,
        maturity_model=FixedOutflow(0.7),
    )
    assert [(o.product.id, o.trigger, o.contract) for o in decision.offers] == [
        ("deposit_rate_bonus", "maturity", "ck-1")
    ]
    assert f"matures on {due}" in decision.offers[0].reasons[0].text
