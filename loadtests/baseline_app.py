"""The bare baseline the latency budget is measured against.

One FastAPI route on the service's path that does what any answer from this service must
do at the least - read one customer's feature record with one Redis GET - and nothing
else: no validation model, no scoring, no filtering, no metrics, no logging. It uses the
same Redis client, timeouts and key layout as the service and, like the service's route,
is a plain ``def`` run in FastAPI's thread pool, so the difference between the two is the
service's own work.

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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The baseline app; ``settings`` default to the environment (``NBO_*``)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = OnlineStore.for_settings(connect(settings), settings)
        app.state.store = store
        app.state.feature_set = store.current()
        try:
            yield
        finally:
            store.client.close()

    app = FastAPI(title="nbo load-test baseline", lifespan=lifespan, openapi_url=None)

    @app.post("/v1/recommendations")
    def read_one_record(request: Request, body: dict[str, Any]) -> Response:
        store: OnlineStore = request.app.state.store
        feature_set: FeatureSetInfo | None = request.app.state.feature_set
        customer_id = str(body.get("customer_id", ""))
        raw = None
        if feature_set is not None:  # the same key the service reads (pseudonymised)
            key = store.record_key(feature_set.version, customer_id, feature_set.record_keys)
            raw = store.client.get(key)
        payload = {"customer_id": customer_id, "found": raw is not None}
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
