"""The rules an event must meet against the decision it cites (no Redis, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.catalogue import Catalogue
from service.api.schemas import EventIn
from service.decision.feedback import CitedDecision, check_against_decision
from service.infra.event_store import EventRejected

DECIDED = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
ME = "a" * 64
RECORD: dict[str, Any] = {
    "customer": ME,
    "channel": "advisor",
    "decided_at": DECIDED.isoformat(),
    "offers": [{"product_id": "credit_card"}, {"product_id": "advisor_callback"}],
    "arbitration": {
        "retention_eligible": True,
        "priorities": [
            {"product_id": "advisor_callback"},
            {"product_id": "fee_waiver"},  # ranked, not in the top k
            {"product_id": "credit_card"},
            {"product_id": "funds"},  # ranked, not offered, not a retention treatment
        ],
    },
}


def event(**changes: Any) -> EventIn:
    values: dict[str, Any] = {
        "event_id": "e1",
        "type": "accepted",
        "customer_id": "C1",
        "product_id": "credit_card",
        "request_id": "b" * 32,
        "channel": "advisor",
        "timestamp": DECIDED + timedelta(minutes=5),
        **changes,
    }
    return EventIn(**values)


def rejection(decision: CitedDecision, pseudonym: str = ME, **changes: Any) -> str | None:
    try:
        check_against_decision(event(**changes), pseudonym, decision, 300)
    except EventRejected as exc:
        assert exc.field in ("customer_id", "product_id", "channel", "timestamp")
        return exc.kind
    return None


def test_offered_products_and_ranked_retention_treatments_are_accepted(
    catalogue: Catalogue,
) -> None:
    decision = CitedDecision.from_record(RECORD, catalogue)
    assert decision.offered == {"credit_card", "advisor_callback"}
    assert decision.retention_candidates == {"advisor_callback", "fee_waiver"}
    for product in ("credit_card", "advisor_callback", "fee_waiver"):
        assert rejection(decision, product_id=product) is None, product


@pytest.mark.parametrize(
    ("pseudonym", "changes", "kind"),
    [
        ("b" * 64, {}, "customer_mismatch"),
        # The customer is named first: nothing else is said about another's decision.
        ("b" * 64, {"channel": "app", "product_id": "funds"}, "customer_mismatch"),
        (ME, {"channel": "app"}, "channel_mismatch"),
        (ME, {"product_id": "funds"}, "product_not_offered"),
        (ME, {"product_id": "deposit_rate_bonus"}, "product_not_offered"),  # never ranked
        (ME, {"timestamp": DECIDED - timedelta(seconds=301)}, "before_decision"),
        (ME, {"timestamp": datetime(1, 1, 1, tzinfo=UTC)}, "before_decision"),
    ],
)
def test_a_mismatch_is_named(
    catalogue: Catalogue, pseudonym: str, changes: dict[str, Any], kind: str
) -> None:
    assert rejection(CitedDecision.from_record(RECORD, catalogue), pseudonym, **changes) == kind


def test_clock_skew_before_the_decision_is_tolerated(catalogue: Catalogue) -> None:
    decision = CitedDecision.from_record(RECORD, catalogue)
    assert rejection(decision, timestamp=DECIDED - timedelta(seconds=299)) is None


def test_a_degraded_decision_without_offers_accepts_no_event(catalogue: Catalogue) -> None:
    empty = {**RECORD, "offers": [], "arbitration": {"retention_eligible": False, "priorities": []}}
    assert rejection(CitedDecision.from_record(empty, catalogue)) == "product_not_offered"
