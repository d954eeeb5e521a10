"""Which feedback events the service accepts: the rules, not the storage.

Events are the labels of retraining and they change what a customer is offered (a
decline pauses a product), so one must be what it claims: a response to an offer the
service made. An event is checked, before anything is stored,

* on its own: a catalogue product, a timestamp at most ``tolerance`` seconds ahead of
  the server clock (:func:`check_event`);
* against the decision its ``request_id`` cites (:func:`check_against_decision`): the
  same customer (by pseudonym), one of the products that decision offered (or a retention
  treatment among its ranked candidates, e.g. an advisor's call-back when churn risk was
  high), the same channel, and a timestamp not more than ``tolerance`` seconds before the
  decision (the same clock-skew allowance, the other way).

Why the decision and not just the request id: any caller holding the ``events`` scope
could otherwise cite one customer's decision to decline offers for another, or plant
labels for products never offered. A mismatch is named (field and kind) but the cited
decision's own values are never echoed: the checks must not become a way to read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.catalogue import Catalogue
from service.api.schemas import EventIn
from service.infra.event_store import EventRejected


def check_event(event: EventIn, catalogue: Catalogue, now: datetime, tolerance_s: float) -> None:
    """Raise :class:`EventRejected` for an unknown product or a timestamp in the future."""
    if event.product_id not in catalogue.ids:
        raise EventRejected("product_id", "unknown_product", "unknown product", event.product_id)
    if event.timestamp > now + timedelta(seconds=tolerance_s):
        raise EventRejected(
            "timestamp",
            "future_timestamp",
            f"more than {tolerance_s:g} s in the future",
            event.timestamp.isoformat(),
        )


@dataclass(frozen=True)
class CitedDecision:
    """What an event is checked against, read from the decision's audit record."""

    customer: str
    """The customer's pseudonym."""
    channel: str
    decided_at: datetime
    offered: frozenset[str]
    retention_candidates: frozenset[str]
    """Retention treatments ranked by the decision (offered or not)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any], catalogue: Catalogue) -> CitedDecision:
        """From an audit record (``service.decision.audit_record``)."""
        ranked = (record.get("arbitration") or {}).get("priorities") or []
        treatments = {p.id for p in catalogue.products if p.retention}
        return cls(
            customer=record["customer"],
            channel=record["channel"],
            decided_at=datetime.fromisoformat(record["decided_at"]),
            offered=frozenset(o["product_id"] for o in record.get("offers") or []),
            retention_candidates=frozenset(
                p["product_id"] for p in ranked if p.get("product_id") in treatments
            ),
        )


def check_against_decision(
    event: EventIn, pseudonym: str, decision: CitedDecision, tolerance_s: float
) -> None:
    """Raise :class:`EventRejected` naming the first field that does not match ``decision``.

    The customer is checked first, and nothing else is said about another customer's
    decision.
    """
    if pseudonym != decision.customer:
        raise _mismatch("customer_id", "customer_mismatch", "is not the customer of", event)
    if event.channel != decision.channel:
        raise _mismatch("channel", "channel_mismatch", "is not the channel of", event)
    allowed = decision.offered | decision.retention_candidates
    if event.product_id not in allowed:
        raise _mismatch("product_id", "product_not_offered", "was not offered by", event)
    earliest = decision.decided_at - timedelta(seconds=tolerance_s)
    if event.timestamp < earliest:
        raise _mismatch(
            "timestamp",
            "before_decision",
            f"is more than {tolerance_s:g} s before",
            event,
        )


def _mismatch(field: str, kind: str, what: str, event: EventIn) -> EventRejected:
    value = getattr(event, field)
    shown = value.isoformat() if isinstance(value, datetime) else value
    return EventRejected(field, kind, f"{field} {what} the decision that request_id names", shown)
