"""``POST /v1/events`` over HTTP on a real Redis: stored once, validated, contact updated."""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.redis_keys import customer_events_key, events_key
from core.settings import Settings
from features.events_export import export_events
from service.api.events import unavailable_response
from service.infra.breaker import BreakerOpenError
from tests.support.event_app import (  # noqa: F401 (fixtures)
    CUSTOMER,
    OTHER_CUSTOMER,
    app,
    module_app,
    settings,
)

pytestmark = pytest.mark.integration


def recommend(client: TestClient, channel: str = "app", customer: str = CUSTOMER) -> dict[str, Any]:
    response = client.post(
        "/v1/recommendations", json={"customer_id": customer, "channel": channel, "k": 3}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["offers"], body
    return body


def event(decision: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A ``shown`` event of the decision's first offer, now, on the decision's channel."""
    body: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "shown",
        "customer_id": decision["customer_id"],
        "product_id": decision["offers"][0]["product_id"],
        "request_id": decision["request_id"],
        "channel": decision["channel"],
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body.update(changes)
    return body


def stored_keys(client: redis.Redis, settings: Settings) -> list[bytes]:
    patterns = (f"{settings.events_prefix}*", f"{settings.contact_prefix}*")
    return [key for p in patterns for key in client.scan_iter(match=p)]


def errors(response: Any) -> list[tuple[list[str], str]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "validation_error"
    return [(e["loc"], e["type"]) for e in body["detail"]]


def test_event_is_stored_once_and_acknowledged_twice(
    app: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    shown = event(recommend(app))
    first = app.post("/v1/events", json=shown)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "stored"
    # The same content, its timestamp written in another offset: still the same event.
    at = datetime.fromisoformat(shown["timestamp"]).astimezone(timezone(timedelta(hours=2)))
    again = app.post("/v1/events", json={**shown, "timestamp": at.isoformat()})
    assert again.status_code == 202
    assert again.json() == {**first.json(), "status": "duplicate"}
    assert redis_client.xlen(events_key(settings.events_prefix)) == 1
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        redis_client.xrange(events_key(settings.events_prefix)),
    )
    ((_, values),) = entries
    assert values[b"event_id"] == b"evt-1"
    assert CUSTOMER.encode() not in b"".join(values.values())  # pseudonymous
    contact = [k for k in stored_keys(redis_client, settings) if b"contact" in k]
    assert len(contact) == 1 and redis_client.zcard(contact[0]) == 1
    # Indexed once under the customer (what the console reads), with a TTL.
    index = customer_events_key(settings.events_prefix, values[b"customer"].decode())
    assert redis_client.zrange(index, 0, -1) == [first.json()["stream_id"].encode()]
    assert 0 < redis_client.ttl(index) <= settings.audit_index_ttl_seconds


def test_decline_removes_the_offer_at_once(app: TestClient) -> None:
    first = recommend(app)
    top = first["offers"][0]["product_id"]
    assert app.post("/v1/events", json=event(first, type="declined")).status_code == 202
    after = recommend(app)
    assert top not in [o["product_id"] for o in after["offers"]]
    record = app.get(f"/v1/decisions/{after['request_id']}").json()
    assert {"product_id": top, "rule": "contact_policy"}.items() <= next(
        e for e in record["exclusions"] if e["product_id"] == top
    ).items()


def test_three_impressions_cap_the_offer(app: TestClient) -> None:
    first = recommend(app)
    top = first["offers"][0]["product_id"]
    for i in range(3):
        assert app.post("/v1/events", json=event(first, event_id=f"shown-{i}")).status_code == 202
    assert top not in [o["product_id"] for o in recommend(app)["offers"]]


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"type": "liked"}, "type", "literal_error"),
        ({"product_id": "gold_bars"}, "product_id", "unknown_product"),
        ({"event_id": "a b"}, "event_id", "string_pattern_mismatch"),
        ({"event_id": ""}, "event_id", "string_too_short"),
        ({"customer_id": "x y"}, "customer_id", "string_pattern_mismatch"),
        ({"request_id": "not-a-uuid"}, "request_id", "string_pattern_mismatch"),
        ({"request_id": "f" * 32}, "request_id", "unknown_request_id"),
        ({"channel": "fax"}, "channel", "literal_error"),
        ({"timestamp": (NOW + timedelta(hours=1)).isoformat()}, "timestamp", "future_timestamp"),
        ({"timestamp": "2026-11-02T10:00:00"}, "timestamp", "timezone_aware"),
        ({"timestamp": "yesterday"}, "timestamp", "datetime_format"),
    ],
)
def test_bad_events_are_422_naming_the_field_and_store_nothing(
    app: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    change: dict[str, Any],
    field: str,
    error_type: str,
) -> None:
    response = app.post("/v1/events", json=event(recommend(app), **change))
    assert errors(response) == [(["body", field], error_type)]
    assert stored_keys(redis_client, settings) == []


def not_offered(decision: dict[str, Any], catalogue: Catalogue) -> str:
    """A catalogue product the decision did not offer."""
    offered = {o["product_id"] for o in decision["offers"]}
    return next(p.id for p in catalogue.products if p.id not in offered)


def test_an_event_must_match_the_decision_it_cites(
    app: TestClient, settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    """Issue #27: any recorded request id took an event for another customer, a product the
    decision never offered or another channel - a forged decline suppressed B's offers."""
    a = recommend(app)
    b_before = recommend(app, customer=OTHER_CUSTOMER)
    recorded = app.get(f"/v1/decisions/{a['request_id']}").json()
    decided_at = datetime.fromisoformat(recorded["decided_at"])
    tolerance = settings.event_future_tolerance_seconds
    forged = [
        # A's decision cited for B, a decline of an offer B was shown.
        (event(a, customer_id=OTHER_CUSTOMER, type="declined"), "customer_id", "customer_mismatch"),
        (event(a, product_id=not_offered(a, catalogue)), "product_id", "product_not_offered"),
        (event(a, channel="sms"), "channel", "channel_mismatch"),
        (event(a, timestamp="1970-01-01T00:00:00Z"), "timestamp", "before_decision"),
        (event(a, timestamp="0001-01-01T00:00:00Z"), "timestamp", "before_decision"),
        (
            event(a, timestamp=(decided_at - timedelta(seconds=tolerance + 5)).isoformat()),
            "timestamp",
            "before_decision",
        ),
    ]
    for body, field, kind in forged:
        response = app.post("/v1/events", json=body)
        assert errors(response) == [(["body", field], kind)], body
        assert "decision" in response.json()["detail"][0]["msg"]
    assert stored_keys(redis_client, settings) == []
    b_after = recommend(app, customer=OTHER_CUSTOMER)
    assert [o["product_id"] for o in b_after["offers"]] == [
        o["product_id"] for o in b_before["offers"]
    ]
    # Within the clock-skew tolerance before the decision is fine.
    skewed = (decided_at - timedelta(seconds=tolerance - 5)).isoformat()
    assert app.post("/v1/events", json=event(a, timestamp=skewed)).status_code == 202


def test_a_known_event_id_citing_a_mismatching_decision_is_422_not_duplicate(
    app: TestClient,
) -> None:
    """The decision is checked before the event id: a repeat cannot skip the checks."""
    a = recommend(app)
    assert app.post("/v1/events", json=event(a)).status_code == 202
    response = app.post("/v1/events", json=event(a, customer_id=OTHER_CUSTOMER))
    assert errors(response) == [(["body", "customer_id"], "customer_mismatch")]


def test_an_event_id_reused_with_other_content_is_409_and_stores_nothing(
    app: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    """Issue #27: a ``declined`` sent with a ``clicked`` event's id was acknowledged as a
    duplicate and silently lost."""
    a = recommend(app)
    clicked = event(a, type="clicked")
    first = app.post("/v1/events", json=clicked)
    assert first.status_code == 202
    before = {k: redis_client.dump(k) for k in stored_keys(redis_client, settings)}
    earlier = datetime.fromisoformat(clicked["timestamp"]) - timedelta(seconds=1)
    for change in ({"type": "declined"}, {"timestamp": earlier.isoformat()}):
        conflict = app.post("/v1/events", json={**clicked, **change})
        assert conflict.status_code == 409, conflict.text
        body = conflict.json()
        assert body["type"] == "event_conflict"
        assert "evt-1" in body["detail"] and "new event_id" in body["detail"]
    assert {k: redis_client.dump(k) for k in stored_keys(redis_client, settings)} == before
    assert app.post("/v1/events", json=clicked).json()["status"] == "duplicate"


def test_a_503_says_the_event_may_have_been_stored() -> None:
    """Issue #27: after a timeout Redis may still have run the script (a retry then found a
    duplicate): the answer must not claim the event was not stored."""
    for exc in (redis.TimeoutError("timed out"), BreakerOpenError("redis", 1.5)):
        response = unavailable_response(exc)
        assert response.status_code == 503
        detail = response.body.decode()
        assert "may not have been stored" in detail and "same event_id" in detail
    assert unavailable_response(BreakerOpenError("redis", 1.5)).headers["retry-after"] == "2"


def test_slightly_future_timestamps_are_tolerated(app: TestClient) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert app.post("/v1/events", json=event(recommend(app), timestamp=soon)).status_code == 202


def test_export_writes_events_since_a_date(
    app: TestClient, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    decision = recommend(app)
    now = datetime.now(UTC)
    older = (now - timedelta(seconds=200)).isoformat()  # within the skew before the decision
    app.post("/v1/events", json=event(decision, event_id="old", timestamp=older))
    app.post("/v1/events", json=event(decision, event_id="new", type="clicked"))
    out = tmp_path / "out" / "events.parquet"
    since = now - timedelta(seconds=100)
    assert export_events(redis_client, settings.events_prefix, since, out, 300) == 1
    table = pq.read_table(out).to_pylist()
    assert [(r["event_id"], r["type"]) for r in table] == [("new", "clicked")]
    assert table[0]["customer"] != CUSTOMER and len(table[0]["customer"]) == 64
    assert [p.name for p in out.parent.iterdir()] == ["events.parquet"]  # no temp left


def test_the_schema_lists_the_catalogue_product_ids(app: TestClient, catalogue: Catalogue) -> None:
    """Issue #27: an unknown product is a 422 the OpenAPI document did not predict."""
    document = app.get("/openapi.json").json()
    product_id = document["components"]["schemas"]["EventIn"]["properties"]["product_id"]
    assert product_id["enum"] == catalogue.ids
    assert {"409", "422", "503"} <= document["paths"]["/v1/events"]["post"]["responses"].keys()
