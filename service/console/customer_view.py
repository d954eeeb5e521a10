"""The customer page's profile and contact state, read by pseudonym.

Profile: the customer's record in the live feature set (tier, lifecycle stage, risk level
and how old its assessment is today, products held, maturing contracts), and the churn
risk the serving churn model gives that record, with its reasons: what the service would
use if the customer were asked about now. Contact state: the same sorted set the request
path reads (``service.decision.contact_policy``), shown against the customer's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from core.customer_facts import customer_facts
from core.redis_keys import FeatureSetKeys, contact_key
from core.suitability import assessment_valid, effective_risk_level
from features.online_store import PSEUDONYM_KEYS
from service.decision.churn_risk import ChurnRisk, assess_churn_risk
from service.decision.contact_policy import DAY_SECONDS, ContactLimits, ContactState, start_of_day
from service.infra.state import ServingState
from service.runtime import Runtime


@dataclass(frozen=True)
class Profile:
    feature_set: str
    as_of: str
    record: dict[str, Any]
    tier: str | None
    lifecycle_stage: str | None
    risk_level: int | None
    assessed_on: date | None
    assessment_age_days: int | None
    assessment_valid: bool
    effective_level: int
    held: list[tuple[str, str]]
    """(product id, name) of the products held."""
    maturities: list[dict[str, Any]]
    churn: ChurnRisk | None


def read_record(runtime: Runtime, pseudonym: str) -> tuple[ServingState, dict[str, Any] | None]:
    """The serving state and the customer's record in its live feature set (None: none)."""
    state = runtime.state.current
    info = state.feature_set
    if info is None or info.record_keys != PSEUDONYM_KEYS:
        return state, None
    keys = FeatureSetKeys(runtime.settings.feature_prefix)
    raw = cast(bytes | None, runtime.redis.get(keys.record(info.version, pseudonym)))
    if raw is None:
        return state, None
    try:
        return state, info.decode(raw)  # compact records by their schema, else JSON
    except ValueError:
        return state, None


def profile(runtime: Runtime, pseudonym: str, today: date) -> Profile | None:
    """The customer's profile from the live feature set; None without a record there."""
    state, record = read_record(runtime, pseudonym)
    if record is None or state.feature_set is None:
        return None
    settings = runtime.settings
    facts = customer_facts(record)
    validity = settings.risk_assessment_validity_days
    held = []
    for pid in sorted(facts.held):
        try:
            held.append((pid, state.catalogue.get(pid).name))
        except KeyError:
            held.append((pid, pid))
    maturities = record.get("maturities")
    return Profile(
        feature_set=state.feature_set.version,
        as_of=state.feature_set.as_of.isoformat(),
        record=record,
        tier=record.get("tier"),
        lifecycle_stage=record.get("lifecycle_stage"),
        risk_level=facts.risk_level,
        assessed_on=facts.risk_assessed_on,
        assessment_age_days=(today - facts.risk_assessed_on).days
        if facts.risk_assessed_on
        else None,
        assessment_valid=assessment_valid(facts, today, validity),
        effective_level=effective_risk_level(facts, today, validity),
        held=held,
        maturities=maturities if isinstance(maturities, list) else [],
        churn=assess_churn_risk(
            state.churn_scorer,
            record,
            settings.churn_medium_threshold,
            settings.churn_high_threshold,
        ),
    )


@dataclass(frozen=True)
class ContactView:
    limits: ContactLimits
    impressions: list[tuple[str, int]]
    """(product, shown in the rolling window), most shown first."""
    pauses: list[tuple[str, str, str]]
    """(product, declined/accepted, paused until YYYY-MM-DD)."""
    shown_today: list[tuple[str, int]]
    """(channel, offers shown today) against the daily cap."""
    entries: int


def contact_view(runtime: Runtime, pseudonym: str, tier: str | None, now: datetime) -> ContactView:
    """The customer's contact state against the limits of their tier."""
    settings = runtime.settings
    limits = ContactLimits.from_settings(settings).for_tier(
        runtime.state.current.decisioning.moments, tier
    )
    raw = cast(
        list[tuple[bytes, float]],
        runtime.redis.zrangebyscore(
            contact_key(settings.contact_prefix, pseudonym),
            now.timestamp() - limits.horizon_seconds,
            "+inf",
            withscores=True,
        ),
    )
    state = ContactState.decode(raw)
    since = now.timestamp() - limits.window_days * DAY_SECONDS
    shown: dict[str, int] = {}
    for e in state.entries:
        if e.kind == "shown" and e.at > since:
            shown[e.product_id] = shown.get(e.product_id, 0) + 1
    pauses = []
    for kind in ("declined", "accepted"):
        for product in sorted({e.product_id for e in state.entries if e.kind == kind}):
            last = state.last(kind, product)
            if last is not None and now.timestamp() - last < limits.suppression_days * DAY_SECONDS:
                until = datetime.fromtimestamp(last + limits.suppression_days * DAY_SECONDS)
                pauses.append((product, kind, until.date().isoformat()))
    today = start_of_day(now)
    channels = sorted({e.channel for e in state.entries if e.kind == "shown" and e.at >= today})
    return ContactView(
        limits=limits,
        impressions=sorted(shown.items(), key=lambda item: (-item[1], item[0])),
        pauses=pauses,
        shown_today=[(c, state.shown_on_channel(c, today)) for c in channels],
        entries=len(state.entries),
    )
