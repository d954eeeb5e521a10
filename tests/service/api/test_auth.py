"""API keys over HTTP: 401 without a valid key, 403 without the route's scope, keys unlogged.

Refusals happen before any route runs, so most of these apps are never started (no
lifespan): only requests that must reach a route use a started app.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.demo import _with_demo_key
from cli.main import app as cli
from core.api_keys import SCOPES, ApiKeyEntry, ApiScope, hash_key
from core.settings import Environment, Settings
from service.api.auth import HEADER, OPERATIONS_PATHS, SCHEME, AccessPolicy
from service.app import create_app
from service.infra.log import LOGGER_NAME, JsonFormatter
from tests.support.auth import AUTH, TEST_API_KEY

pytestmark = pytest.mark.integration

KEYS = {scope: f"nbo_only-{scope}-0123456789" for scope in SCOPES}
"""One key per scope, holding that scope alone."""

ROUTES: list[tuple[str, str, ApiScope, dict[str, Any] | None]] = [
    ("POST", "/v1/recommendations", "recommend", {"customer_id": "C1", "channel": "app"}),
    ("POST", "/v1/events", "events", {}),
    ("GET", "/v1/decisions/" + "0" * 32, "audit", None),
    ("HEAD", "/v1/decisions/" + "0" * 32, "audit", None),
    ("POST", "/admin/reload", "admin", None),
]


def single_scope_keys() -> list[ApiKeyEntry]:
    return [
        ApiKeyEntry(name=f"only-{scope}", sha256=hash_key(key), scopes=(scope,))
        for scope, key in KEYS.items()
    ]


@pytest.fixture
def keyed(settings: Settings, empty_registry: str) -> Settings:
    """The test settings plus one key per scope."""
    return settings.model_copy(
        update={
            "mlflow_tracking_uri": empty_registry,
            "api_keys": [*settings.api_keys, *single_scope_keys()],
        }
    )


@pytest.fixture
def refusing(keyed: Settings) -> TestClient:
    """An app that is never started: fine for requests the guards refuse."""
    return TestClient(create_app(keyed))


@pytest.fixture
def started(keyed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(keyed)) as client:
        yield client


def call(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, key: str | None
) -> Any:
    headers = {HEADER: key} if key is not None else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTES)
def test_without_a_key_every_protected_route_is_401(
    refusing: TestClient, method: str, path: str, scope: str, body: dict[str, Any] | None
) -> None:
    response = call(refusing, method, path, body, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("APIKey")
    if method != "HEAD":
        assert response.json() == {"type": "unauthorized", "detail": "missing X-API-Key header"}


@pytest.mark.parametrize("bad", ["nbo_wrong", "", "x" * 5000, TEST_API_KEY + " "])
def test_an_invalid_key_is_401_and_never_echoed(refusing: TestClient, bad: str) -> None:
    response = refusing.post("/v1/recommendations", json={}, headers={HEADER: bad})
    assert response.status_code == 401
    assert response.json() == {"type": "unauthorized", "detail": "invalid API key in X-API-Key"}


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTES)
def test_a_key_without_the_routes_scope_is_403(
    refusing: TestClient, method: str, path: str, scope: str, body: dict[str, Any] | None
) -> None:
    for other, key in KEYS.items():
        if other == scope:
            continue
        response = call(refusing, method, path, body, key)
        assert response.status_code == 403, (other, path)
        if method != "HEAD":
            assert response.json() == {
                "type": "forbidden",
                "detail": f"API key 'only-{other}' lacks the scope '{scope}' this route needs",
            }
            assert key not in response.text


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTES)
def test_a_key_with_the_scope_reaches_the_route(
    started: TestClient, method: str, path: str, scope: ApiScope, body: dict[str, Any] | None
) -> None:
    response = call(started, method, path, body, KEYS[scope])
    assert response.status_code not in (401, 403, 429), response.text
    assert response.status_code < 500


def test_refusals_are_counted_under_the_route_template(started: TestClient) -> None:
    """A request refused before routing is labelled with the template its path fits, never
    with the raw path (which would hold the request id) nor as unmatched."""
    started.post("/v1/recommendations", json={})
    call(started, "GET", "/v1/decisions/" + "ab" * 16, None, KEYS["recommend"])
    started.get("/no/such/path/C5-RICH")
    text = started.get("/metrics").text
    assert (
        'nbo_http_requests_total{method="POST",route="/v1/recommendations",status="401"} 1.0'
        in text
    )
    assert (
        'nbo_http_requests_total{method="GET",route="/v1/decisions/{request_id}",status="403"}'
        " 1.0" in text
    )
    assert 'route="<unmatched>",status="401"' in text
    assert "abababab" not in text and "C5-RICH" not in text


def test_operations_and_docs_are_open_by_default(refusing: TestClient) -> None:
    for path in ("/healthz", "/docs", "/openapi.json", "/redoc"):
        assert refusing.get(path).status_code == 200, path


def test_operations_endpoints_can_be_closed(keyed: Settings) -> None:
    closed = keyed.model_copy(update={"auth_open_operations": False})
    with TestClient(create_app(closed)) as client:
        for path in OPERATIONS_PATHS:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={HEADER: KEYS["events"]}).status_code in (200, 503)
        assert client.get("/openapi.json").status_code == 200  # docs stay open


def test_unknown_paths_need_a_key_too(refusing: TestClient) -> None:
    assert refusing.get("/v2/anything").status_code == 401
    assert refusing.get("/v2/anything", headers=AUTH).status_code == 404


def test_without_configured_keys_everything_protected_is_refused(settings: Settings) -> None:
    """In development mode (production refuses to start without keys: tests/service/test_app.py)."""
    closed = settings.model_copy(update={"api_keys": [], "environment": Environment.DEVELOPMENT})
    client = TestClient(create_app(closed))
    response = client.post("/v1/recommendations", json={}, headers=AUTH)
    assert response.status_code == 401
    assert client.get("/healthz").status_code == 200


def test_auth_can_be_disabled_for_local_development(settings: Settings) -> None:
    update = {"auth_disabled": True, "api_keys": [], "environment": Environment.DEVELOPMENT}
    app = create_app(settings.model_copy(update=update))
    client = TestClient(app)
    body = client.post("/v1/recommendations", json={"k": 0}).json()
    assert body["type"] == "validation_error"  # reached the route: no key was asked for
    document = app.openapi()
    assert "security" not in document
    assert SCHEME not in document.get("components", {}).get("securitySchemes", {})


def test_openapi_declares_the_key_and_each_routes_scope(keyed: Settings) -> None:
    document = create_app(keyed).openapi()
    assert document["components"]["securitySchemes"][SCHEME] == {
        "type": "apiKey",
        "in": "header",
        "name": HEADER,
        "description": document["components"]["securitySchemes"][SCHEME]["description"],
    }
    assert document["security"] == [{SCHEME: []}]
    scopes = {
        f"{method.upper()} {path}": op.get("security")
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    }
    assert scopes == {
        "POST /v1/recommendations": [{SCHEME: ["recommend"]}],
        "POST /v1/events": [{SCHEME: ["events"]}],
        "GET /v1/decisions/{request_id}": [{SCHEME: ["audit"]}],
        "POST /admin/reload": [{SCHEME: ["admin"]}],
        "GET /healthz": [],
        "GET /readyz": [],
        "GET /metrics": [],
    }, "a new route must declare its scope: openapi_extra=requires(...)"
    recommend = document["paths"]["/v1/recommendations"]["post"]["responses"]
    assert {"401", "403", "413", "422", "429"} <= set(recommend)


def test_the_policy_is_what_the_routes_declare(keyed: Settings) -> None:
    policy = AccessPolicy.build(keyed, create_app(keyed))
    assert policy.required_scope("POST", "/v1/recommendations") == "recommend"
    assert policy.required_scope("GET", "/v1/decisions/abc") == "audit"
    assert policy.required_scope("HEAD", "/v1/decisions/abc") == "audit"
    assert policy.required_scope("GET", "/v1/decisions/abc/more") is None
    assert policy.required_scope("GET", "/v1/recommendations") is None  # 405 after a key
    assert policy.identify(TEST_API_KEY.encode()) is not None
    assert policy.identify(b"nbo_other") is None


def test_keys_are_never_logged(started: TestClient) -> None:
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        for key in [*KEYS.values(), "nbo_wrong-key-xyz"]:
            for method, path, _, body in ROUTES:
                call(started, method, path, body, key)
        started.post("/v1/recommendations", json={"customer_id": "C1", "channel": "app"})
    finally:
        logger.removeHandler(handler)
    text = captured.getvalue()
    assert '"status":401' in text and '"status":403' in text and '"status":200' in text
    for secret in [*KEYS.values(), "nbo_wrong-key-xyz", "wrong-key"]:
        assert secret not in text
    assert all(digest not in text for digest in (hash_key(k) for k in KEYS.values()))


def test_keys_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"name": "app", "sha256": hash_key("nbo_k"), "scopes": ["recommend"]}
    monkeypatch.setenv("NBO_API_KEYS", json.dumps([entry]))
    assert Settings().api_keys == [ApiKeyEntry(**entry)]  # type: ignore[arg-type]
    monkeypatch.setenv("NBO_API_KEYS", json.dumps([entry, {**entry, "sha256": "0" * 64}]))
    with pytest.raises(ValidationError, match="name repeated: app"):
        Settings()
    monkeypatch.setenv("NBO_API_KEYS", json.dumps([{**entry, "sha256": "nbo_plain-key"}]))
    with pytest.raises(ValidationError, match="sha256"):
        Settings()  # a plain key where the hash belongs is refused
    monkeypatch.setenv("NBO_API_KEYS", json.dumps([{**entry, "scopes": ["everything"]}]))
    with pytest.raises(ValidationError, match="scopes"):
        Settings()


def test_nbo_keys_new_makes_a_key_that_the_service_accepts(settings: Settings) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "new", "--name", "mobile", "--scopes", "recommend,events", "--json"]
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["entry"] == {
        "name": "mobile",
        "sha256": hash_key(made["key"]),
        "scopes": ["recommend", "events"],
    }
    configured = settings.model_copy(update={"api_keys": [ApiKeyEntry(**made["entry"])]})
    client = TestClient(create_app(configured))
    assert client.get("/v2/none", headers={HEADER: made["key"]}).status_code == 404  # known key
    assert client.post("/admin/reload", headers={HEADER: made["key"]}).status_code == 403
    plain = CliRunner().invoke(cli, ["keys", "new", "--name", "mobile"])
    assert plain.exit_code == 0 and "key (shown once): nbo_" in plain.output
    assert "NBO_API_KEYS entry:" in plain.output


def test_nbo_keys_hash_reads_the_key_from_stdin() -> None:
    result = CliRunner().invoke(
        cli,
        ["keys", "hash", "--name", "batch", "--scopes", "all", "--rate-limit", "5/second"],
        input="nbo_existing-key\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "name": "batch",
        "sha256": hash_key("nbo_existing-key"),
        "scopes": list(SCOPES),
        "rate_limit": "5/second",
    }
    bad = CliRunner().invoke(cli, ["keys", "hash", "--name", "x", "--scopes", "root"], input="k")
    assert bad.exit_code != 0 and "unknown scope root" in bad.output


def test_the_demo_key_opens_every_route_of_the_demo_server(settings: Settings) -> None:
    key, served = _with_demo_key(settings)
    assert key not in served.model_dump_json()  # only its hash is configured
    client = TestClient(create_app(served))
    for method, path, _, body in ROUTES:
        assert call(client, method, path, body, "nbo_not-the-demo-key").status_code == 401
    assert client.get("/v2/none", headers={HEADER: key}).status_code == 404  # accepted
    assert [k.name for k in served.api_keys] == ["tests", "demo"]
