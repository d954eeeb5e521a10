"""``Runtime.clock``: an app built with its own clock decides and checks events by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from service.app import create_app
from service.runtime import system_clock
from tests.support.auth import AUTH
from tests.support.records import TODAY, adult, publish_records

pytestmark = pytest.mark.integration

CUSTOMER = "C-CLOCK"


def test_decisions_and_events_follow_the_apps_clock(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_records(
        settings, redis_client, catalogue, {CUSTOMER: adult()}, as_of=TODAY - timedelta(days=40)
    )
    then = datetime.combine(TODAY - timedelta(days=20), datetime.min.time(), UTC)
    with TestClient(create_app(settings, clock=lambda: then), headers=AUTH) as client:
        answer = client.post(
            "/v1/recommendations", json={"customer_id": CUSTOMER, "channel": "app", "k": 3}
        ).json()
        assert answer["offers"], answer
        record = client.get(f"/v1/decisions/{answer['request_id']}").json()
        assert datetime.fromisoformat(record["decided_at"]) == then
        event = {
            "event_id": "evt-clock-1",
            "type": "shown",
            "customer_id": CUSTOMER,
            "product_id": answer["offers"][0]["product_id"],
            "request_id": answer["request_id"],
            "channel": "app",
        }
        # The system clock's "now" lies twenty days in this app's future: refused.
        late = client.post("/v1/events", json=event | {"timestamp": system_clock().isoformat()})
        assert late.status_code == 422, late.text
        assert late.json()["detail"][0]["loc"] == ["body", "timestamp"]
        on_time = (then + timedelta(seconds=1)).isoformat()
        ok = client.post("/v1/events", json=event | {"timestamp": on_time})
        assert ok.status_code == 202, ok.text
