"""The bare baseline the latency budget is measured against.

One FastAPI route on the service's path that does what any answer from this service must
do at the least - read one customer's feature record with one Redis GET - and nothing
else: no validation model, no scoring, no filtering, no metrics, no logging. Like the
service's route it is an ``async def`` on the event loop that awaits its read with the
service's own asyncio client (``service.infra.redis_guard.connect_guarded_async``: the same
timeouts, retry and circuit breaker) and the same key layout, so the difference between
the two is the service's own work.

It must stay as async as the service's route: a baseline paying a thread-pool hop the
service does not pay would flatter every ratio.

Run it the way the load runner does::

    uvicorn --factory loadtests.baseline_app:create_app --workers 2 --port 8100

Redis and the feature prefix come from the same ``NBO_*`` settings as the service; the
live feature-set version is read once at startup.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from core.redis_server import connect
from core.settings import Settings, get_settings
from features.online_store import FeatureSetInfo, OnlineStore
from service.infra.breaker import CircuitBreaker
from service.infra.redis_guard import connect_guarded_async


def create_app(settings: Settings | None = None) -> FastAPI:
    """The baseline app; ``settings`` default to the environment (``NBO_*``)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = OnlineStore.for_settings(connect(settings), settings)
        app.state.store = store
        app.state.feature_set = store.current()  # blocking, once, before serving
        breaker = CircuitBreaker(
            "redis", settings.redis_breaker_failures, settings.redis_breaker_reset_seconds
        )
        app.state.reader = connect_guarded_async(settings, breaker)
        try:
            yield
        finally:
            await app.state.reader.aclose()
            store.client.close()

    app = FastAPI(title="nbo load-test baseline", lifespan=lifespan, openapi_url=None)

    @app.post("/v1/recommendations")
    async def read_one_record(request: Request, body: dict[str, Any]) -> Response:
        store: OnlineStore = request.app.state.store
        feature_set: FeatureSetInfo | None = request.app.state.feature_set
        customer_id = str(body.get("customer_id", ""))
        raw = None
        if feature_set is not None:  # the same key the service reads (pseudonymised)
            key = store.record_key(feature_set.version, customer_id, feature_set.record_keys)
            raw = await request.app.state.reader.get(key)
        payload = {"customer_id": customer_id, "found": raw is not None}
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
