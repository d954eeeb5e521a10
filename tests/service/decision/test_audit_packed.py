"""The service keeps the compact feature record it read in the audit trail as its bytes
(``features.audit_features``) and gives the record back whole on every read."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.redis_keys import audit_schema_key, decisions_key
from core.settings import Settings
from features.audit_features import PACKED
from features.online_store import OnlineStore
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.records import adult, publish_records

CUSTOMER = "C-PACKED-1"


def ask(client: TestClient) -> dict[str, Any]:
    response = client.post("/v1/recommendations", json={"customer_id": CUSTOMER, "channel": "app"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_a_compact_feature_record_is_kept_as_its_bytes_and_read_back_whole(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    """The service reads a compact record; the trail keeps those bytes and its schema
    (``features.audit_features``) and the decision look-up gives back the record."""
    record = adult(segment="individuals")
    info = publish_records(settings, redis_client, catalogue, {CUSTOMER: record}, compact=True)
    with TestClient(create_app(settings), headers=AUTH) as client:
        body = ask(client)
        found = client.get(f"/v1/decisions/{body['request_id']}")
    assert found.status_code == 200 and found.json()["features"] == record
    ((_, entry),) = redis_client.xrange(decisions_key(settings.audit_prefix))
    stored = orjson.loads(entry[b"d"])
    assert "features" not in stored and len(entry[b"d"]) < 14_000
    raw = redis_client.get(
        OnlineStore.for_settings(redis_client, settings).record_key(info.version, CUSTOMER)
    )
    assert base64.b64decode(stored[PACKED]) == raw
    (schema,) = info.record_schemas
    assert redis_client.exists(audit_schema_key(settings.audit_prefix, schema.id)) == 1
