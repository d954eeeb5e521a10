"""``POST /v1/events`` over HTTP on a real Redis: stored once, validated, contact updated."""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient

from core.redis_keys import events_key
from core.settings import Settings
from features.events_export import export_events
from tests.support.event_app import CUSTOMER, app, module_app, settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def recommend(client: TestClient, channel: str = "app") -> dict[str, Any]:
    response = client.post(
        "/v1/recommendations", json={"customer_id": CUSTOMER, "channel": channel, "k": 3}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def event(request_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "shown",
        "customer_id": CUSTOMER,
        "product_id": "payroll_account",
        "request_id": request_id,
        "channel": "app",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body.update(changes)
    return body


def stored_keys(client: redis.Redis, settings: Settings) -> list[bytes]:
    patterns = (f"{settings.events_prefix}*", f"{settings.contact_prefix}*")
    return [key for p in patterns for key in client.scan_iter(match=p)]


def test_event_is_stored_once_and_acknowledged_twice(
    app: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    request_id = recommend(app)["request_id"]
    first = app.post("/v1/events", json=event(request_id))
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "stored"
    again = app.post("/v1/events", json=event(request_id))
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


def test_decline_removes_the_offer_at_once(app: TestClient) -> None:
    first = recommend(app)
    top = first["offers"][0]["product_id"]
    declined = event(first["request_id"], type="declined", product_id=top)
    assert app.post("/v1/events", json=declined).status_code == 202
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
        shown = event(first["request_id"], event_id=f"shown-{i}", product_id=top)
        assert app.post("/v1/events", json=shown).status_code == 202
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
    request_id = recommend(app)["request_id"]
    response = app.post("/v1/events", json={**event(request_id), **change})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "validation_error"
    assert [(e["loc"], e["type"]) for e in body["detail"]] == [(["body", field], error_type)]
    assert stored_keys(redis_client, settings) == []


def test_slightly_future_timestamps_are_tolerated(app: TestClient) -> None:
    request_id = recommend(app)["request_id"]
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert app.post("/v1/events", json=event(request_id, timestamp=soon)).status_code == 202


def test_export_writes_events_since_a_date(
    app: TestClient, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    request_id = recommend(app)["request_id"]
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    app.post("/v1/events", json=event(request_id, event_id="old", timestamp=old))
    app.post("/v1/events", json=event(request_id, event_id="new", type="clicked"))
    out = tmp_path / "out" / "events.parquet"
    since = datetime.now(UTC) - timedelta(days=1)
    assert export_events(redis_client, settings.events_prefix, since, out, 300) == 1
    table = pq.read_table(out).to_pylist()
    assert [(r["event_id"], r["type"]) for r in table] == [("new", "clicked")]
    assert table[0]["customer"] != CUSTOMER and len(table[0]["customer"]) == 64
    assert [p.name for p in out.parent.iterdir()] == ["events.parquet"]  # no temp left
