"""Contact policy: do not pester a customer with the same offer, or after a "no".

Three rules, applied after the suitability and eligibility filter (they only remove):

* **impression cap** - at most ``max_impressions`` ``shown`` events of one product to one
  customer in the last ``window_days`` (rolling);
* **suppression** - a product the customer ``declined`` (or ``accepted``: the holdings
  snapshot will show it later) is not offered again for ``suppression_days``;
* **daily channel cap** - at most ``channel_daily_cap`` offers ``shown`` on one channel to
  one customer per UTC calendar day; applied to the final top k (see :func:`daily_capacity`);
* **tier service level** - ``moments.tiers.<tier>`` of the decisioning config: a customer of
  that tier gets offers only on its ``channels`` (elsewhere every candidate is excluded),
  and its ``channel_daily_cap`` / ``max_impressions`` replace the settings' caps
  (:func:`for_tier`). A record without a known tier keeps the settings' limits.

State: ONE sorted set per customer (``core.redis_keys.contact_key``, hash-tagged like the
customer's feature record, so both are read from one node in one round trip). A member is
``kind|product|channel|event_id`` (kind ``s`` shown, ``d`` declined, ``a`` accepted) scored
by the event's time in epoch seconds. The request path reads it with one
``ZRANGEBYSCORE`` from ``now - horizon`` in the same read script as the feature record
(``service.infra.feature_fetch``); events add members (``service.infra.event_store``),
trim those older than the horizon and refresh the key's TTL. Because the event id is part
of the member, a replayed event cannot count twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from core.catalogue import Product
from core.decisioning import MomentsConfig
from core.object_tables import ObjectTable
from core.redis_keys import contact_key
from core.settings import Settings, contact_horizon_seconds
from core.suitability import Exclusion, Rule, partition

DAY_SECONDS = 86_400
KIND_CODES = {"shown": "s", "declined": "d", "accepted": "a"}
"""Event types that change contact state, and their one-letter code in a member."""
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


def member(event_type: str, product_id: str, channel: str, event_id: str) -> str:
    return f"{KIND_CODES[event_type]}|{product_id}|{channel}|{event_id}"


@dataclass(frozen=True)
class ContactLimits:
    max_impressions: int
    window_days: int
    suppression_days: int
    channel_daily_cap: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactLimits:
        return cls(
            settings.contact_max_impressions,
            settings.contact_window_days,
            settings.decline_suppression_days,
            settings.channel_daily_cap,
        )

    def for_tier(self, moments: MomentsConfig, tier: str | None) -> ContactLimits:
        """These limits with the tier's caps, when the config gives ``tier`` a service level.

        Only caps change, never the windows, so the contact read's horizon (read before the
        record, hence before the tier is known) covers every tier.
        """
        service = moments.tiers.get(tier) if tier is not None else None
        if service is None:
            return self
        return replace(
            self,
            max_impressions=service.max_impressions or self.max_impressions,
            channel_daily_cap=(
                service.channel_daily_cap
                if service.channel_daily_cap is not None
                else self.channel_daily_cap
            ),
        )

    @classmethod
    def for_request(
        cls, settings: Settings, moments: MomentsConfig, tier: str | None
    ) -> ContactLimits:
        """``from_settings(settings).for_tier(moments, tier)``, the instance shared by the
        requests with the same settings values, config and tier (it is immutable)."""
        key = (
            settings.contact_max_impressions,
            settings.contact_window_days,
            settings.decline_suppression_days,
            settings.channel_daily_cap,
            tier,
        )
        return _REQUEST_LIMITS.get(
            (moments,), key, lambda: cls.from_settings(settings).for_tier(moments, tier)
        )

    @property
    def horizon_seconds(self) -> int:
        """How far back any rule looks: older entries are never needed (and get trimmed)."""
        return contact_horizon_seconds(self.window_days, self.suppression_days)


_REQUEST_LIMITS: ObjectTable[ContactLimits] = ObjectTable(1024)
"""Limits by their inputs (``core.object_tables``: a reloaded config gets entries of its
own)."""


@dataclass(frozen=True)
class ContactEntry:
    kind: str  # shown / declined / accepted
    product_id: str
    channel: str
    at: float  # epoch seconds


@dataclass(frozen=True)
class ContactState:
    """What the customer was recently shown, declined and accepted (one ZRANGEBYSCORE)."""

    entries: tuple[ContactEntry, ...] = ()
    known: bool = True  # False when the state could not be read (Redis failed)

    @classmethod
    def decode(cls, raw: Iterable[tuple[bytes | str, float]]) -> ContactState:
        """Parse ``ZRANGEBYSCORE ... WITHSCORES``; a malformed member is skipped."""
        entries = []
        for value, score in raw:
            text = value.decode() if isinstance(value, bytes) else value
            parts = text.split("|", 3)
            if len(parts) == 4 and parts[0] in _KIND_NAMES:
                entries.append(
                    ContactEntry(_KIND_NAMES[parts[0]], parts[1], parts[2], float(score))
                )
        return cls(tuple(entries))

    def impressions(self, product_id: str, since: float) -> int:
        """``shown`` events of the product after ``since`` (a rolling window excludes its start)."""
        return sum(
            1
            for e in self.entries
            if e.kind == "shown" and e.product_id == product_id and e.at > since
        )

    def last(self, kind: str, product_id: str) -> float | None:
        times = [e.at for e in self.entries if e.kind == kind and e.product_id == product_id]
        return max(times) if times else None

    def shown_on_channel(self, channel: str, since: float) -> int:
        return sum(
            1 for e in self.entries if e.kind == "shown" and e.channel == channel and e.at >= since
        )

    def summary(self, now: datetime, limits: ContactLimits, channel: str) -> dict[str, object]:
        """For the audit record: counts per product in the window, and today's channel count."""
        if not self.entries:  # nothing in the window: every count is zero
            return {
                "known": self.known,
                "impressions_in_window": {},
                "declined": [],
                "accepted": [],
                "shown_today_on_channel": 0,
            }
        since = now.timestamp() - limits.window_days * DAY_SECONDS
        shown: dict[str, int] = {}
        for e in self.entries:
            if e.kind == "shown" and e.at > since:
                shown[e.product_id] = shown.get(e.product_id, 0) + 1
        return {
            "known": self.known,
            "impressions_in_window": shown,
            "declined": sorted({e.product_id for e in self.entries if e.kind == "declined"}),
            "accepted": sorted({e.product_id for e in self.entries if e.kind == "accepted"}),
            "shown_today_on_channel": self.shown_on_channel(channel, start_of_day(now)),
        }


def start_of_day(now: datetime) -> float:
    """Epoch seconds of the UTC midnight that starts ``now``'s day.

    Epoch time has no leap seconds, so every UTC day starts at a multiple of
    :data:`DAY_SECONDS`: the timestamp less its remainder. Both steps are exact in floating
    point (the remainder of a float is exact, and so is the difference, a whole number of
    days), so this is the float ``now.astimezone(UTC)`` at midnight gives, without
    building the datetimes.
    """
    at = now.timestamp()
    return at - at % DAY_SECONDS


def contact_exclusion(
    product: Product, state: ContactState, now: datetime, limits: ContactLimits
) -> Exclusion | None:
    """The contact rule that keeps ``product`` from this customer now, or ``None``."""
    at = now.timestamp()
    for kind in ("declined", "accepted"):
        last = state.last(kind, product.id)
        if last is not None and at - last < limits.suppression_days * DAY_SECONDS:
            days = max(0, int((at - last) // DAY_SECONDS))
            return Exclusion(
                product.id,
                Rule.CONTACT_POLICY,
                f"{kind} {days} days ago; paused for {limits.suppression_days} days",
            )
    shown = state.impressions(product.id, at - limits.window_days * DAY_SECONDS)
    if shown >= limits.max_impressions:
        return Exclusion(
            product.id,
            Rule.CONTACT_POLICY,
            f"shown {shown} times in {limits.window_days} days (cap {limits.max_impressions})",
        )
    return None


def split_by_contact_policy(
    products: Sequence[Product], state: ContactState, now: datetime, limits: ContactLimits
) -> tuple[list[Product], list[Exclusion]]:
    """Partition into (still offerable, excluded by the impression cap or a suppression)."""
    if not state.entries and limits.max_impressions > 0:
        return list(products), []  # no contact in the window: no rule can apply
    return partition(products, lambda product: contact_exclusion(product, state, now, limits))


def split_by_tier_channel(
    products: Sequence[Product], moments: MomentsConfig, tier: str | None, channel: str
) -> tuple[list[Product], list[Exclusion]]:
    """Remove every product when ``channel`` is not one the customer's tier is contacted on."""
    service = moments.tiers.get(tier) if tier is not None else None
    if service is None or channel in service.channels:
        return list(products), []
    where = ", ".join(service.channels)
    detail = f"tier {tier}: contacted on {where} only, not {channel}"
    return [], [Exclusion(product.id, Rule.CONTACT_POLICY, detail) for product in products]


def daily_capacity(state: ContactState, channel: str, now: datetime, limits: ContactLimits) -> int:
    """How many more offers may be shown on ``channel`` today (0 when the cap is reached)."""
    shown = state.shown_on_channel(channel, start_of_day(now)) if state.entries else 0
    return max(0, limits.channel_daily_cap - shown)


@dataclass(frozen=True)
class ContactRead:
    """The read of one customer's contact state, to go into the feature fetch's one command."""

    key: str
    since: float  # epoch seconds: entries older than this are ignored

    @classmethod
    def for_customer(
        cls, prefix: str, pseudonym: str, now: datetime, limits: ContactLimits
    ) -> ContactRead:
        return cls(contact_key(prefix, pseudonym), now.timestamp() - limits.horizon_seconds)
