"""Bad input over HTTP: 413 for big bodies, 400/422 naming what is wrong, no state changed."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.live_server import running_service
from tests.support.logs import captured_logs
from tests.support.records import adult, publish_records
from tests.support.redis_state import redis_snapshot

pytestmark = pytest.mark.integration

MAX = 2048
GOOD = {"customer_id": "C-BAD-INPUT", "channel": "app", "k": 3}
JSON = {**AUTH, "content-type": "application/json"}
REQUEST_ID = "0123456789abcdef0123456789abcdef"
EVENT = {
    "event_id": "evt-1",
    "type": "shown",
    "customer_id": "C-BAD-INPUT",
    "product_id": "credit_card",
    "request_id": REQUEST_ID,
    "channel": "app",
    "timestamp": "2026-01-01T00:00:00Z",
}


@pytest.fixture
def client(
    settings: Settings, empty_registry: str, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[TestClient]:
    small = settings.model_copy(
        update={"mlflow_tracking_uri": empty_registry, "max_body_bytes": MAX}
    )
    publish_records(small, redis_client, catalogue, {"C-BAD-INPUT": adult()})
    with TestClient(create_app(small)) as started:
        yield started


def chunks(total: int, size: int = 512) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_declared_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/v1/recommendations", content=b" " * (MAX + 1), headers=JSON)
    assert response.status_code == 413
    assert response.json() == {
        "type": "payload_too_large",
        "detail": f"request body larger than {MAX} bytes",
    }


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/v1/recommendations", content=chunks(MAX * 10), headers=JSON)
    assert response.status_code == 413
    assert response.json()["type"] == "payload_too_large"


def test_bodies_up_to_the_limit_pass_declared_or_streamed(client: TestClient) -> None:
    padded = ('{"customer_id": "C-BAD-INPUT", "channel": "app"' + " " * 1900 + "}").encode()
    assert len(padded) <= MAX
    assert client.post("/v1/recommendations", content=padded, headers=JSON).status_code == 200
    streamed = client.post(
        "/v1/recommendations", content=iter([padded[:100], padded[100:]]), headers=JSON
    )
    assert streamed.status_code == 200, streamed.text


def test_malformed_json_is_422_with_its_position(client: TestClient) -> None:
    response = client.post("/v1/recommendations", content=b'{"customer_id": ', headers=JSON)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"


@pytest.mark.parametrize(
    ("content", "headers", "error_type"),
    [
        (b"", JSON, "missing"),
        (b'{"customer_id": "C-BAD-INPUT", "channel": "app"}', AUTH, "content_type"),
        (
            b'{"customer_id": "C-BAD-INPUT", "channel": "app"}',
            {**AUTH, "content-type": "text/plain"},
            "content_type",
        ),
        (b"[1, 2]", JSON, "model_type"),
        (b'{"customer_id": "C-BAD-INPUT", "channel": "app", "x": 1}', JSON, "extra_forbidden"),
    ],
)
def test_a_body_that_is_no_json_request_is_422_at_body(
    client: TestClient, content: bytes, headers: dict[str, str], error_type: str
) -> None:
    response = client.post("/v1/recommendations", content=content, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == error_type and error["loc"][0] == "body"


def test_a_json_media_type_with_parameters_or_a_suffix_is_json(client: TestClient) -> None:
    body = b'{"customer_id": "C-BAD-INPUT", "channel": "app"}'
    for media_type in ("application/json; charset=utf-8", "application/vnd.bank+json"):
        headers = {**AUTH, "content-type": media_type}
        response = client.post("/v1/recommendations", content=body, headers=headers)
        assert response.status_code == 200, (media_type, response.text)


def test_a_body_that_is_not_text_is_400(client: TestClient) -> None:
    response = client.post("/v1/recommendations", content=b'{"customer_id": "\xff"}', headers=JSON)
    assert response.status_code == 400
    assert response.json()["type"] == "bad_request"


RAW_ID = "S0004026"
NON_FINITE = ("1e400", "-1e400", "NaN", "Infinity", "-Infinity")
NON_FINITE_BODIES = {
    "/v1/recommendations": [
        '{"customer_id": "%s", "k": %s}',
        '{"customer_id": "%s", "channel": "app", "k": %s}',
        '{"customer_id": "%s", "channel": "app", "extra": [1, {"deep": %s}]}',
    ],
    "/v1/events": [
        '{"customer_id": "%s", "type": "shown", "k": %s}',
        '{"event_id": "e1", "customer_id": "%s", "type": "shown", "product_id": "credit_card",'
        ' "request_id": "0123456789abcdef0123456789abcdef", "channel": "app",'
        ' "timestamp": "2026-01-01T00:00:00Z", "x": %s}',
    ],
}


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(
    ("path", "template"), [(p, t) for p, ts in NON_FINITE_BODIES.items() for t in ts]
)
def test_non_finite_numbers_are_json_invalid_and_never_logged(
    client: TestClient, path: str, template: str, number: str
) -> None:
    """Issue #27: ``1e400``, ``NaN`` or ``-Infinity`` anywhere gave a 500 whose logged
    traceback held the raw customer id (the 422 handler could not serialise ``inf``)."""
    content = (template % (RAW_ID, number)).encode()
    with captured_logs() as logs:
        response = client.post(path, content=content, headers=JSON)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("json_invalid", ["body"])
    assert "finite" in error["msg"] and "input" not in error
    text = logs.getvalue()
    assert '"status":422' in text  # the access log line was captured
    assert RAW_ID not in text and number not in text and "Traceback" not in text


def test_a_whole_number_k_written_as_a_float_is_accepted(client: TestClient) -> None:
    """JSON (and JSON Schema) have one number type; 3.5 and "3" stay errors."""
    response = client.post("/v1/recommendations", json={**GOOD, "k": 2.0}, headers=AUTH)
    assert response.status_code == 200
    integer = client.post("/v1/recommendations", json={**GOOD, "k": 2}, headers=AUTH)
    assert integer.status_code == 200
    offers = [offer["product_id"] for offer in response.json()["offers"]]
    # The same answer as k=2 (the oracle), and k honoured: two offers, not "at most two".
    assert offers == [offer["product_id"] for offer in integer.json()["offers"]]
    assert len(offers) == 2, response.json()


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"event_id": "evt 1"}, "event_id", "string_pattern_mismatch"),
        ({"event_id": "e" * 65}, "event_id", "string_too_long"),
        ({"customer_id": "C/1"}, "customer_id", "string_pattern_mismatch"),
        ({"customer_id": "C" * 65}, "customer_id", "string_too_long"),
        ({"product_id": "Credit Card"}, "product_id", "string_pattern_mismatch"),
        ({"product_id": "../etc"}, "product_id", "string_pattern_mismatch"),
        ({"request_id": "not-a-request-id"}, "request_id", "string_pattern_mismatch"),
        ({"request_id": REQUEST_ID.upper()}, "request_id", "string_pattern_mismatch"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp", "timezone_aware"),
        # Issue #27: a far-past offset overflowed to a 500; a number passed as a date-time.
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp", "datetime_out_of_range"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp", "datetime_out_of_range"),
        ({"timestamp": 0}, "timestamp", "datetime_type"),
        ({"timestamp": 1767225600.0}, "timestamp", "datetime_type"),
        ({"timestamp": "1767225600"}, "timestamp", "datetime_format"),
        ({"timestamp": "2026-01-01"}, "timestamp", "datetime_format"),
    ],
)
def test_bad_event_ids_are_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str, error_type: str
) -> None:
    response = client.post("/v1/events", json={**EVENT, **change}, headers=AUTH)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", field], error_type)]


@pytest.mark.parametrize("request_id", ["short", "G" * 32, "0" * 33])
def test_a_malformed_decision_id_is_422_naming_it(client: TestClient, request_id: str) -> None:
    response = client.get(f"/v1/decisions/{request_id}", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "request_id"]


def test_no_rejected_request_changes_any_state(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    """A batch of every kind of refusal leaves every key under the test's prefix as it was."""
    assert client.post("/v1/recommendations", json=GOOD, headers=AUTH).status_code == 200
    assert client.app.state.runtime.audit.flush(timeout=60)  # type: ignore[attr-defined]  # written, not racing the snapshot
    before = redis_snapshot(redis_client, key_prefix)
    assert before, "the feature set and the recorded decision are there"
    refused = [
        client.post("/v1/recommendations", json=GOOD),  # 401
        client.post("/v1/events", json=EVENT, headers={"X-API-Key": "nbo_wrong"}),  # 401
        client.post("/v1/recommendations", content=b" " * (MAX + 1), headers=JSON),  # 413
        client.post("/v1/events", content=chunks(MAX * 4), headers=JSON),  # 413
        client.post("/v1/recommendations", content=b"{", headers=JSON),  # 422
        client.post("/v1/recommendations", content=b"\xff", headers=JSON),  # 400
        client.post("/v1/recommendations", json={**GOOD, "k": 99}, headers=AUTH),  # 422
        client.post("/v1/recommendations", json={**GOOD, "x": 1}, headers=AUTH),  # 422
        client.post("/v1/events", json={**EVENT, "event_id": "a b"}, headers=AUTH),  # 422
        client.post("/v1/events", json={**EVENT, "product_id": "unknown_x"}, headers=AUTH),
        client.post("/v1/events", json=EVENT, headers=AUTH),  # 422: no such decision
        client.get("/v1/decisions/bad", headers=AUTH),  # 422
        client.put("/v1/recommendations", json=GOOD, headers=AUTH),  # 405
    ]
    assert [r.status_code for r in refused] == [
        401, 401, 413, 413, 422, 400, 422, 422, 422, 422, 422, 422, 405,
    ]  # fmt: skip
    assert redis_snapshot(redis_client, key_prefix) == before


@pytest.mark.parametrize("path", ["/v1/recommendations", "/v1/events"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_an_encoded_body_is_415(client: TestClient, path: str, encoding: str) -> None:
    """Issue #27: a gzip body got 400 (not text) instead of 415 (encoding not supported)."""
    body = gzip.compress(orjson.dumps(GOOD))
    headers = {**JSON, "content-encoding": encoding}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["type"] == "unsupported_media_type"
    assert "Content-Encoding" in response.json()["detail"]


def test_an_identity_encoding_is_plain(client: TestClient) -> None:
    headers = {**JSON, "content-encoding": "identity"}
    response = client.post("/v1/recommendations", content=orjson.dumps(GOOD), headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/recommendations/"), ("GET", "/healthz/")]
)
def test_a_trailing_slash_is_404_never_a_redirect_to_the_host_header(
    client: TestClient, method: str, path: str
) -> None:
    """Issue #27: the redirect's Location was built from the request's Host header."""
    response = client.request(
        method,
        path,
        json=GOOD if method == "POST" else None,
        headers={**AUTH, "host": "attacker.example"},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert "location" not in response.headers


def test_over_real_http_a_non_finite_number_keeps_the_connection(
    settings: Settings, empty_registry: str
) -> None:
    """Issue #27's reproduction against uvicorn: the 500 also dropped the keep-alive
    connection. Now a 422, and the next request goes over the same connection."""
    served = settings.model_copy(update={"mlflow_tracking_uri": empty_registry})
    ports = []
    with running_service(served) as server, httpx.Client(base_url=server.url) as http:
        for content, headers in ((b'{"customer_id":"S0004026","k":1e400}', JSON), (None, AUTH)):
            if content is None:
                response = http.post("/v1/recommendations", json=GOOD, headers=headers)
                assert response.status_code == 200
            else:
                response = http.post("/v1/recommendations", content=content, headers=headers)
                assert response.status_code == 422
                assert response.json()["detail"][0]["type"] == "json_invalid"
            stream = response.extensions["network_stream"]
            ports.append(stream.get_extra_info("client_addr")[1])
    assert ports[0] == ports[1], "the connection was not kept alive"
