"""Property-based checks of the whole HTTP API against its own OpenAPI document (schemathesis).

Schemathesis reads ``/openapi.json`` of a real app (real Redis, a registry with champions, a
published feature set), generates valid and invalid requests for every operation and checks
each answer: never a 5xx, status codes and bodies as documented, invalid input refused,
and no protected route answering without a key (``ignored_auth``). Examples are capped so
the run stays well under a minute.
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from starlette.types import ASGIApp, Receive, Scope, Send

from core.catalogue import Catalogue
from core.settings import Settings
from service.api.auth import SCHEME
from service.app import create_app
from tests.support.auth import AUTH, TEST_API_KEY
from tests.support.records import adult, publish_records
from tests.support.served import champion_registry  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
EXCLUDED_CHECKS: dict[str, list[Any]] = {
    # A schema-valid event can still name an unknown product or a request id with no
    # recorded decision: 422 by design (docs/decisioning.md), which the schema cannot say.
    "POST /v1/events": [schemathesis.checks.positive_data_acceptance],
}


def _without_lifespan(app: ASGIApp) -> ASGIApp:
    """``app`` for schemathesis, whose ASGI client would otherwise run the lifespan again.

    The real lifespan runs once, in the fixture's ``TestClient`` (and stops with it);
    schemathesis keeps an app's lifespan alive until the interpreter exits.
    """

    async def shim(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return shim


@pytest.fixture
def api_schema(
    settings: Settings,
    champion_registry: str,
    redis_client: redis.Redis,
    catalogue: Catalogue,
) -> Iterator[Any]:
    served = settings.model_copy(update={"mlflow_tracking_uri": champion_registry})
    publish_records(
        served, redis_client, catalogue, {"C0001234": adult(), "C-LOW": adult(risk_level=1)}
    )
    app = create_app(served)
    with TestClient(app, headers=AUTH) as client:
        assert client.get("/readyz").status_code == 200
        # The key as schemathesis auth: sent with every request, never fuzzed.
        config = SchemathesisConfig.from_dict(
            {"auth": {"openapi": {SCHEME: {"api_key": TEST_API_KEY}}}}
        )
        yield schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(app), config=config)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_holds_to_the_schema(api_schema: Any, mode: GenerationMode) -> None:
    """Every operation, valid (positive) or invalid (negative) requests, all default checks.

    Driven through ``APIOperation.as_strategy`` rather than ``schema.parametrize``: the
    lazy-fixture pytest plugin of schemathesis 4.32 fails on pytest 9 (``Function._nodeid``).
    """
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/recommendations",
        "POST /v1/events",
        "GET /v1/decisions/{request_id}",
        "POST /admin/reload",
    }
    for operation in operations:
        takes_input = operation.body or operation.path_parameters or operation.query
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing to make invalid
        _fuzz(operation, mode, EXCLUDED_CHECKS.get(operation.label, []))


def _fuzz(operation: Any, mode: GenerationMode, excluded: list[Any]) -> None:
    """Send ``MAX_EXAMPLES`` generated requests to one operation; check every answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=excluded)

    check()
