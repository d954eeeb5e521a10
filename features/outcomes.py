"""The outcomes report: what the offers of a period achieved, by variant, against control.

Joins three sources, all keyed by the customer's pseudonym (``core.pseudonym``), so no raw
customer id appears in the report:

* the decisions of the audit trail (``features.audit_export.read_decisions``) decided in
  ``[since, until]`` (UTC days, both included): one per answer, with its ``variant``
  (``champion`` / ``challenger`` / ``control``), channel, tier and offers;
* the feedback events (``features.events_export.read_events``): an ``accepted`` event
  counts for the offer (request id + product) it cites, when it happened at most
  ``window_days`` after the decision; an event that cites no recorded decision stops the
  report (:class:`OutcomesError`): its figures would silently be wrong;
* the canonical holdings (``core.tables``): an offered product is *taken up* when the
  customer did not hold it in the last snapshot dated before the decision day and holds it
  in a snapshot dated from the decision day to ``window_days`` after it, whether or not an
  event was sent.

Control decisions offer nothing; what they *would* have been offered is their
``holdout_offers`` when the record has them, otherwise every active cross-sell product of
the catalogue (``Catalogue.holdable``). Uplift of a variant = its take-up rate minus the
control take-up rate of the same group (same channel, product, tier), with Newcombe's 95%
interval (``features.outcome_stats``). Why: acceptance alone says who clicked; take-up
against control says what the offers changed. Rules and caveats: docs/outcomes.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.redis_server import RedisClient
from core.settings import Settings
from features.audit_export import read_decisions
from features.events_export import read_events
from features.outcome_stats import newcombe_difference, wilson

GROUP_KEYS = ("variant", "product", "channel", "tier")
CONTROL = "control"
NO_PRODUCT = "(none)"


class OutcomesError(ValueError):
    """Bad report input (option, window or data); the message names what is wrong."""


@dataclass(frozen=True)
class ReportWindow:
    """What to report: decisions of ``[since, until]``, take-up within ``window_days``."""

    since: date
    until: date
    window_days: int = 30
    by: tuple[str, ...] = ("variant",)

    def __post_init__(self) -> None:
        if self.until < self.since:
            raise OutcomesError(
                f"--until {self.until} is before --since {self.since}: the dates are reversed"
            )
        if self.window_days < 1:
            raise OutcomesError(f"--window-days {self.window_days} must be at least 1")
        unknown = [key for key in self.by if key not in GROUP_KEYS]
        if unknown:
            raise OutcomesError(
                f"--by {','.join(unknown)}: unknown key; choose among {', '.join(GROUP_KEYS)}"
            )
        if not self.by or len(set(self.by)) != len(self.by):
            raise OutcomesError(f"--by {','.join(self.by)}: give each key once")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """First instant after the reported decisions."""
        return datetime.combine(self.until + timedelta(days=1), time(), tzinfo=UTC)


def parse_by(text: str) -> tuple[str, ...]:
    """``"variant,channel"`` -> ``("variant", "channel")`` (validated by ReportWindow)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class DecisionRow:
    """The fields of one audit record the report needs."""

    request_id: str
    customer: str
    decided_at: datetime
    variant: str
    channel: str
    tier: str
    offered: tuple[str, ...]
    holdout: tuple[str, ...] | None


def _product_ids(items: Iterable[Any]) -> tuple[str, ...]:
    return tuple(i["product_id"] if isinstance(i, Mapping) else str(i) for i in items)


def decision_row(record: Mapping[str, Any]) -> DecisionRow:
    """One audit record -> :class:`DecisionRow` (``holdout_offers``: product ids or offers)."""
    holdout = record.get("holdout_offers")
    return DecisionRow(
        request_id=str(record["request_id"]),
        customer=str(record["customer"]),
        decided_at=datetime.fromisoformat(record["decided_at"]).astimezone(UTC),
        variant=str(record.get("variant") or "champion"),
        channel=str(record.get("channel")),
        tier=str(record.get("tier") or "unknown"),
        offered=_product_ids(record.get("offers") or []),
        holdout=_product_ids(holdout) if holdout is not None else None,
    )


def load_decisions(
    client: RedisClient, settings: Settings, window: ReportWindow
) -> tuple[list[DecisionRow], set[str]]:
    """The decisions of the window, and every request id an event of the report may cite.

    Reading starts early enough to hold every decision an event dated in the window could
    cite: the service accepts an event only while its decision is indexed
    (``audit_index_ttl_seconds``).
    """
    lookback = timedelta(
        days=window.window_days, seconds=settings.audit_index_ttl_seconds
    ) + timedelta(days=1)
    rows: list[DecisionRow] = []
    known: set[str] = set()
    for record in read_decisions(client, settings.audit_prefix, window.start - lookback):
        known.add(str(record.get("request_id")))
        decided = datetime.fromisoformat(record["decided_at"]).astimezone(UTC)
        if window.start <= decided < window.end:
            rows.append(decision_row(record))
    return rows, known


def load_accepted(
    client: RedisClient, settings: Settings, window: ReportWindow, known: set[str]
) -> list[tuple[str, str, datetime]]:
    """``(request_id, product_id, timestamp)`` of the accepted events that may count.

    Raises :class:`OutcomesError` when an event dated in the report's span cites a request
    id the audit trail does not hold.
    """
    events = read_events(
        client, settings.events_prefix, window.start, settings.event_future_tolerance_seconds
    )
    last = window.end + timedelta(days=window.window_days)
    in_span = [e for e in events if isinstance(e["timestamp"], datetime) and e["timestamp"] < last]
    orphans = [e for e in in_span if e["request_id"] not in known]
    if orphans:
        first = orphans[0]
        raise OutcomesError(
            f"{len(orphans)} event(s) cite no recorded decision, e.g. event "
            f"{first['event_id']!r} cites request {first['request_id']!r}; the audit trail "
            "no longer holds (or never held) it, so acceptance would be miscounted"
        )
    return [
        (str(e["request_id"]), str(e["product_id"]), e["timestamp"])  # type: ignore[misc]
        for e in in_span
        if e["type"] == "accepted"
    ]


class HoldingsIndex:
    """Each pseudonymous customer's holdings snapshots, for take-up look-ups."""

    def __init__(self, holdings: pd.DataFrame, pseudonymise: Pseudonymiser, wanted: set[str]):
        products = [c for c in holdings.columns if c not in ("customer_id", "month")]
        self.products = {pid: i for i, pid in enumerate(products)}
        ids = holdings["customer_id"].astype(str)
        pseudonyms = {raw: pseudonymise(raw) for raw in ids.unique()}  # once per customer
        frame = holdings.assign(pseudonym=ids.map(pseudonyms))
        frame = frame[frame["pseudonym"].isin(wanted)].sort_values(["pseudonym", "month"])
        self.last_snapshot: date | None = (
            pd.Timestamp(holdings["month"].max()).date() if len(holdings) else None
        )
        self._by_customer: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for pseudonym, part in frame.groupby("pseudonym", sort=False):
            days = pd.to_datetime(part["month"]).dt.normalize().to_numpy("datetime64[D]")
            self._by_customer[str(pseudonym)] = (days, part[products].to_numpy(np.int8))

    def taken(self, customer: str, product: str, day: date, window_days: int) -> bool:
        """Not held in the last snapshot before ``day``, held in one of ``[day, day + N]``."""
        found = self._by_customer.get(customer)
        column = self.products.get(product)
        if found is None or column is None:
            return False
        days, held = found
        first = np.datetime64(day, "D")
        lo = int(np.searchsorted(days, first, side="left"))
        hi = int(np.searchsorted(days, first + np.timedelta64(window_days, "D"), side="right"))
        if lo > 0 and held[lo - 1, column]:
            return False
        return bool(held[lo:hi, column].any())


def offer_units(
    decisions: list[DecisionRow],
    accepted: list[tuple[str, str, datetime]],
    holdings: HoldingsIndex,
    cross_sell: tuple[str, ...],
    window_days: int,
) -> pd.DataFrame:
    """One row per (decision, product offered - or, for control, that would have been).

    ``unit`` marks the rows that count for take-up: cross-sell products (``cross_sell``);
    a retention treatment is not a held product, its acceptance is its outcome. A decision
    with nothing offered keeps one row with product ``(none)`` and ``unit`` false, so that
    it still counts as a decision and a customer.
    """
    holdable = frozenset(cross_sell)
    acceptance: dict[tuple[str, str], datetime] = {}
    for r, p, t in sorted(accepted, key=lambda a: a[2]):
        acceptance.setdefault((r, p), t)  # the first acceptance of an offer counts
    span = timedelta(days=window_days)
    rows: list[dict[str, Any]] = []
    for d in decisions:
        control = d.variant == CONTROL
        base = {
            "request_id": d.request_id,
            "customer": d.customer,
            "variant": d.variant,
            "channel": d.channel,
            "tier": d.tier,
            "week": (d.decided_at.date() - timedelta(days=d.decided_at.weekday())).isoformat(),
            "basis": ("holdout_offers" if d.holdout is not None else "cross_sell")
            if control
            else "offers",
        }
        # (product, shown, counts for take-up): what was shown, and for control what
        # would have been (a control answer may still show a non-marketing treatment).
        units = [(p, True, p in holdable and not control) for p in d.offered]
        if control:
            would = d.holdout if d.holdout is not None else cross_sell
            units += [(p, False, p in holdable) for p in would]
        if not units:
            units = [(NO_PRODUCT, False, False)]
        for product, shown, unit in units:
            at = acceptance.get((d.request_id, product))
            rows.append(
                base
                | {"product": product, "unit": unit, "shown": shown}
                | {
                    "accepted": shown and at is not None and at <= d.decided_at + span,
                    "taken": unit
                    and holdings.taken(d.customer, product, d.decided_at.date(), window_days),
                }
            )
    return pd.DataFrame(rows)


def _group_figures(part: pd.DataFrame) -> dict[str, Any]:
    shown = int(part["shown"].sum())
    accepted = int(part["accepted"].sum())
    with_offers = int(part.loc[part["unit"], "customer"].nunique())
    took = int(part.loc[part["taken"], "customer"].nunique())
    acceptance = wilson(accepted, shown)
    take_up = wilson(took, with_offers)
    return {
        "decisions": int(part["request_id"].nunique()),
        "customers": int(part["customer"].nunique()),
        "offers_shown": shown,
        "accepted": accepted,
        "acceptance_rate": acceptance.as_record() if acceptance else None,
        "customers_with_offers": with_offers,
        "customers_took_up": took,
        "take_up_rate": take_up.as_record() if take_up else None,
    }


def _grouped(units: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    groups = []
    for values, part in units.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        groups.append(
            {"group": dict(zip(keys, map(str, values), strict=True))} | _group_figures(part)
        )
    return groups


def _uplift(groups: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Each non-control group against the control group with the same other keys."""
    others = [k for k in keys if k != "variant"]
    controls = {
        tuple(g["group"][k] for k in others): g for g in groups if g["group"]["variant"] == CONTROL
    }
    result = []
    for g in groups:
        if g["group"]["variant"] == CONTROL:
            continue
        control = controls.get(tuple(g["group"][k] for k in others))
        entry: dict[str, Any] = {"group": g["group"], "uplift": None}
        if control is None:
            entry["note"] = (
                "not computable: no control decisions in this window"
                if not controls
                else "not computable: no control group with the same " + ", ".join(others)
            )
        else:
            diff = newcombe_difference(
                g["customers_took_up"],
                g["customers_with_offers"],
                control["customers_took_up"],
                control["customers_with_offers"],
            )
            entry["uplift"] = diff.as_record() if diff else None
            if diff is None:
                entry["note"] = "not computable: a side has no customers with offers"
        result.append(entry)
    return result


def summarise(units: pd.DataFrame, window: ReportWindow) -> dict[str, Any]:
    """The report's figures (plain JSON types) from the offer units."""
    keys = list(window.by)
    groups = _grouped(units, keys)
    uplift_keys = keys if "variant" in keys else ["variant"]
    uplift_groups = groups if "variant" in keys else _grouped(units, ["variant"])
    control = units[units["variant"] == CONTROL]
    weekly = [
        {"week": g["group"]["week"], "variant": g["group"]["variant"]}
        | {k: g[k] for k in ("customers_with_offers", "customers_took_up", "take_up_rate")}
        for g in _grouped(units, ["week", "variant"])
    ]
    by_channel = [
        {"channel": g["group"]["channel"], "variant": g["group"]["variant"]}
        | {k: g[k] for k in ("customers_with_offers", "customers_took_up", "take_up_rate")}
        for g in _grouped(units, ["channel", "variant"])
    ]
    return {
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "window_days": window.window_days,
        "by": keys,
        "control_basis": sorted(set(control["basis"])) if len(control) else [],
        "groups": groups,
        "uplift": _uplift(uplift_groups, uplift_keys),
        "weekly": weekly,
        "by_channel": by_channel,
    }


def outcomes_report(
    client: RedisClient,
    settings: Settings,
    holdings: pd.DataFrame,
    catalogue: Catalogue,
    pseudonymise: Pseudonymiser,
    window: ReportWindow,
) -> dict[str, Any]:
    """The outcomes report of ``window`` (see the module docstring); raises OutcomesError."""
    decisions, known = load_decisions(client, settings, window)
    if not decisions:
        raise OutcomesError(
            f"no recorded decision from {window.since} to {window.until}: empty window "
            "(the audit stream keeps about NBO_AUDIT_RETENTION decisions)"
        )
    accepted = load_accepted(client, settings, window, known)
    index = HoldingsIndex(holdings, pseudonymise, {d.customer for d in decisions})
    cross_sell = tuple(p.id for p in catalogue.holdable if p.status == "active")
    units = offer_units(decisions, accepted, index, cross_sell, window.window_days)
    report = summarise(units, window)
    needed = window.until + timedelta(days=window.window_days)
    last = index.last_snapshot
    report["holdings_until"] = last.isoformat() if last else None
    report["take_up_complete"] = last is not None and last >= needed
    return report
