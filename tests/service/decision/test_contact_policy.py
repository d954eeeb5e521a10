"""Contact policy over simulated time: events written with an injected clock, state read
back with the request path's own pipeline, rules applied by the pure decision function."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import cast

import redis

from core.catalogue import Catalogue
from core.decisioning import DecisioningConfig
from core.pseudonym import pseudonymiser
from core.redis_keys import contact_key
from core.settings import Settings
from features.online_store import OnlineStore
from service.api.schemas import EventIn
from service.decision.contact_policy import ContactLimits, ContactRead, ContactState, daily_capacity
from service.decision.outcome import Decision
from service.decision.recommend import decide
from service.infra.breaker import CircuitBreaker
from service.infra.event_store import store_event
from service.infra.feature_fetch import FeatureLookup, fetch_features
from service.infra.redis_guard import connect_guarded_async
from tests.support.records import adult, publish_records
from tests.support.scorers import FixedScores

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CONFIG = DecisioningConfig.model_validate(
    {"version": "t", "retention": {"churn_threshold": 0.5, "boost": 10}}
)
CUSTOMER = "C-CONTACT"
REQUEST_ID = "0" * 32


class Bank:
    """One customer, real Redis, a clock the test moves."""

    def __init__(self, settings: Settings, client: redis.Redis, catalogue: Catalogue) -> None:
        self.settings = settings
        self.client = client
        self.catalogue = catalogue
        self.info = publish_records(settings, client, catalogue, {CUSTOMER: adult()})
        self.store = OnlineStore.for_settings(client, settings)
        self.now = T0
        self.events = 0

    def event(self, kind: str, product: str, channel: str = "app") -> str:
        self.events += 1
        body = EventIn(
            event_id=f"e{self.events}",
            type=kind,  # type: ignore[arg-type]
            customer_id=CUSTOMER,
            product_id=product,
            request_id=REQUEST_ID,
            channel=channel,  # type: ignore[arg-type]
            timestamp=self.now,
        )
        pseudonym = pseudonymiser(self.settings)(CUSTOMER)
        stored = store_event(self.client, self.settings, body, pseudonym, self.now)
        return stored.status

    def decide(self, channel: str = "advisor", k: int = 10) -> Decision:
        limits = ContactLimits.from_settings(self.settings)
        pseudonym = pseudonymiser(self.settings)(CUSTOMER)
        contact = ContactRead.for_customer(
            self.settings.contact_prefix, pseudonym, self.now, limits
        )

        async def read() -> FeatureLookup:  # with the request path's own client
            reader = connect_guarded_async(self.settings, CircuitBreaker("redis", 5, 1.0))
            try:
                return await fetch_features(
                    reader, self.store, self.info, CUSTOMER, contact=contact
                )
            finally:
                await reader.aclose()

        lookup = asyncio.run(read())
        return decide(
            lookup,
            catalogue=self.catalogue,
            recommender=FixedScores([p.id for p in self.catalogue.holdable]),
            churn_model=None,
            k=k,
            now=self.now,
            settings=self.settings,
            channel=channel,
            decisioning=CONFIG,
        )


def offered(decision: Decision) -> set[str]:
    return {o.product.id for o in decision.offers}


def contact_rules(decision: Decision) -> dict[str, str]:
    return {e.product_id: e.detail for e in decision.exclusions if e.rule.value == "contact_policy"}


def test_impression_cap_in_a_rolling_window(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    bank = Bank(settings, redis_client, catalogue)
    assert "mortgage" in offered(bank.decide())
    for day in (0, 2, 4):  # three impressions over four days
        bank.now = T0 + timedelta(days=day)
        assert bank.event("shown", "mortgage") == "stored"
        if day < 4:
            assert "mortgage" in offered(bank.decide())
    capped = bank.decide()
    assert "mortgage" not in offered(capped)
    assert contact_rules(capped)["mortgage"] == "shown 3 times in 7 days (cap 3)"
    # Day 7, 09:00: the first impression (day 0, 09:00) has just left the 7-day window.
    bank.now = T0 + timedelta(days=7) - timedelta(seconds=1)
    assert "mortgage" not in offered(bank.decide())
    bank.now = T0 + timedelta(days=7)
    assert "mortgage" in offered(bank.decide())


def test_decline_pauses_a_product_for_the_suppression_period(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    bank = Bank(settings, redis_client, catalogue)
    bank.event("declined", "credit_card")
    assert "credit_card" not in offered(bank.decide())
    assert contact_rules(bank.decide())["credit_card"] == "declined 0 days ago; paused for 30 days"
    bank.now = T0 + timedelta(days=29, hours=23)
    assert contact_rules(bank.decide())["credit_card"].startswith("declined 29 days ago")
    bank.now = T0 + timedelta(days=30)
    assert "credit_card" in offered(bank.decide())
    assert "credit_card" not in contact_rules(bank.decide())


def test_clicks_change_nothing_and_other_products_are_unaffected(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    bank = Bank(settings, redis_client, catalogue)
    for _ in range(5):
        bank.event("clicked", "funds")
    bank.event("declined", "loans")
    decision = bank.decide()
    assert "funds" in offered(decision)
    assert set(contact_rules(decision)) == {"loans"}


def test_daily_cap_per_channel(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    capped = settings.model_copy(update={"channel_daily_cap": 4})
    bank = Bank(capped, redis_client, catalogue)
    for product in ("funds", "loans", "credit_card"):
        bank.event("shown", product, channel="app")
    bank.event("shown", "mortgage", channel="sms")  # another channel: not counted on app
    on_app = bank.decide(channel="app", k=3)
    assert len(on_app.offers) == 1  # 4 per day, 3 already shown on the app
    cut = [e for e in on_app.exclusions if e.detail == "daily cap of 4 offers on app reached"]
    assert len(cut) == 2
    assert len(bank.decide(channel="advisor", k=3).offers) == 3
    bank.now = T0.replace(hour=23, minute=59)
    assert len(bank.decide(channel="app", k=3).offers) == 1
    bank.now = T0 + timedelta(days=1) - timedelta(hours=9)  # next UTC day, 00:00
    assert len(bank.decide(channel="app", k=3).offers) == 3


def test_state_is_one_sorted_set_keyed_by_pseudonym(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    bank = Bank(settings, redis_client, catalogue)
    bank.event("shown", "funds")
    keys = [k.decode() for k in redis_client.scan_iter(match=f"{settings.contact_prefix}:*")]
    # The pseudonym is the key's Redis Cluster hash tag (shared with the feature record).
    assert keys == [f"{settings.contact_prefix}:{{{pseudonymiser(settings)(CUSTOMER)}}}"]
    assert CUSTOMER not in keys[0]
    assert redis_client.type(keys[0]) == b"zset"
    ttl = redis_client.ttl(keys[0])
    assert 0 < ttl <= ContactLimits.from_settings(settings).horizon_seconds


def test_entries_older_than_the_horizon_are_trimmed_on_write(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    bank = Bank(settings, redis_client, catalogue)
    bank.event("shown", "funds")
    bank.now = T0 + timedelta(days=31)
    bank.event("shown", "loans")
    key = contact_key(settings.contact_prefix, pseudonymiser(settings)(CUSTOMER))
    members = [m.decode() for m in cast(list[bytes], redis_client.zrange(key, 0, -1))]
    assert members == ["s|loans|app|e2"]


def test_capacity_is_never_negative() -> None:
    limits = ContactLimits(3, 7, 30, 2)
    state = ContactState.decode(
        [(f"s|p{i}|app|e{i}".encode(), T0.timestamp()) for i in range(5)] + [(b"garbage", 1.0)]
    )
    assert len(state.entries) == 5
    assert daily_capacity(state, "app", T0, limits) == 0
