"""Rate limits per API key: 429 with Retry-After, per-key overrides, no state changed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from core.api_keys import SCOPES, ApiKeyEntry, hash_key
from core.catalogue import Catalogue
from core.settings import Settings
from service.api.auth import HEADER
from service.api.rate_limit import KeyRateLimits
from service.app import create_app
from tests.support.auth import AUTH, TEST_API_KEY
from tests.support.records import adult, publish_records
from tests.support.redis_state import redis_snapshot

pytestmark = pytest.mark.integration

SLOW_KEY = "nbo_slow-0123456789"
FREE_KEY = "nbo_free-0123456789"
BODY = {"customer_id": "C-LIMITED", "channel": "app", "k": 3}


@pytest.fixture
def limited(settings: Settings, empty_registry: str) -> Settings:
    """Default 3 a minute; key 'slow' 2 a minute of its own; key 'free' unlimited."""
    return settings.model_copy(
        update={
            "mlflow_tracking_uri": empty_registry,
            "rate_limit": "3/minute",
            "api_keys": [
                *settings.api_keys,
                ApiKeyEntry(
                    name="slow", sha256=hash_key(SLOW_KEY), scopes=SCOPES, rate_limit="2/minute"
                ),
                ApiKeyEntry(
                    name="free", sha256=hash_key(FREE_KEY), scopes=SCOPES, rate_limit="off"
                ),
            ],
        }
    )


@pytest.fixture
def client(
    limited: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[TestClient]:
    publish_records(limited, redis_client, catalogue, {"C-LIMITED": adult()})
    with TestClient(create_app(limited)) as started:
        _clear_of_a_minute_edge()
        yield started


EDGE_MARGIN_SECONDS = 4.0  # each test takes well under a second


def _clear_of_a_minute_edge() -> None:
    """Start a test at least ``EDGE_MARGIN_SECONDS`` before the next minute begins.

    The limiter is a sliding-window counter over fixed minutes: just after a minute starts
    it weighs the previous minute's hits by the share of the window still covering them, so
    a budget spent late in one minute allows one more request early in the next. The tests
    count exact 200s and 429s; one that straddled the edge would see that extra request."""
    into_minute = time.time() % 60.0
    if into_minute > 60.0 - EDGE_MARGIN_SECONDS:
        time.sleep(60.0 - into_minute + 0.05)


def statuses(client: TestClient, key: str, count: int) -> list[int]:
    return [
        client.post("/v1/recommendations", json=BODY, headers={HEADER: key}).status_code
        for _ in range(count)
    ]


def test_the_limit_answers_429_with_retry_after(client: TestClient) -> None:
    assert statuses(client, TEST_API_KEY, 3) == [200, 200, 200]
    refused = client.post("/v1/recommendations", json=BODY, headers=AUTH)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["type"] == "rate_limited"
    assert "'tests'" in body["detail"] and "3 per 1 minute" in body["detail"]
    assert TEST_API_KEY not in refused.text


def test_each_key_has_its_own_budget_and_override(client: TestClient) -> None:
    assert statuses(client, SLOW_KEY, 3) == [200, 200, 429]  # its own 2/minute
    assert statuses(client, TEST_API_KEY, 3) == [200, 200, 200]  # untouched by 'slow'
    assert statuses(client, FREE_KEY, 8) == [200] * 8  # 'off'


def test_open_paths_and_refused_keys_are_not_counted(client: TestClient) -> None:
    for _ in range(10):
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/recommendations", json=BODY).status_code == 401
    assert statuses(client, TEST_API_KEY, 3) == [200, 200, 200]


def test_a_refused_request_changes_no_state(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    assert statuses(client, TEST_API_KEY, 3) == [200, 200, 200]  # these are recorded
    assert client.app.state.runtime.audit.flush(timeout=60)  # type: ignore[attr-defined]  # written, not racing the snapshot
    before = redis_snapshot(redis_client, key_prefix)
    assert statuses(client, TEST_API_KEY, 5) == [429] * 5
    event = {"event_id": "e-1", "type": "shown", "customer_id": "C-LIMITED"}
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 429
    assert redis_snapshot(redis_client, key_prefix) == before


def test_limits_come_from_settings(limited: Settings) -> None:
    limits = KeyRateLimits.from_settings(limited)
    assert limits.describe("tests") == "3 per 1 minute"
    assert limits.describe("slow") == "2 per 1 minute"
    assert limits.describe("free") == "none"
    assert [limits.hit("free") for _ in range(100)] == [None] * 100
    unlimited = limited.model_copy(update={"rate_limit": None, "api_keys": []})
    assert not KeyRateLimits.from_settings(unlimited).active


def test_openapi_documents_429_and_retry_after(limited: Settings) -> None:
    document = create_app(limited).openapi()
    answer = document["paths"]["/v1/recommendations"]["post"]["responses"]["429"]
    assert "Retry-After" in answer["headers"]
    assert "429" not in document["paths"]["/healthz"]["get"]["responses"]


def test_rate_limit_setting_is_validated() -> None:
    assert Settings(rate_limit="off").rate_limit is None
    assert Settings(rate_limit=" 50/second ").rate_limit == "50/second"
    with pytest.raises(ValueError, match="not like '100/second'"):
        Settings(rate_limit="fast")
