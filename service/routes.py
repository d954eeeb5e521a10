"""HTTP endpoints: thin - parse, call the logic, shape the answer."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Depends, Request, Response
from starlette.background import BackgroundTask

from core.redis_server import RedisClient
from service import audit_routes, event_routes
from service.auth import requires
from service.errors import NotReadyError
from service.json_route import JsonBodyRoute
from service.recommend import recommend
from service.redis_guard import breaker_of
from service.runtime import Runtime
from service.schemas import (
    ErrorResponse,
    HealthResponse,
    ReadinessResponse,
    RecommendationRequest,
    RecommendationResponse,
)

router = APIRouter()


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def post_recommendations(body: RecommendationRequest, request: Request) -> Response:
    """Suitable offers for the customer, best first by arbitration priority.

    Always answers 200 when the request is valid: if the customer's features or the model
    are unavailable the answer is the low-risk fallback with ``degraded: true`` and the
    reason. An ``async def`` on the event loop: its one Redis read is awaited with the
    asyncio client (``service.feature_fetch``), and the rest is CPU work of a few
    milliseconds that a thread-pool hop would not parallelise (one interpreter lock per
    worker) but would make slower; measured in docs/performance.md.

    The body is parsed and validated in one pass of pydantic-core (``JsonBodyRoute``:
    no dependency solving, no ``json.loads`` then dict validation). The response is
    built (and validated) once as a ``RecommendationResponse`` and serialized straight to
    JSON bytes by pydantic-core: returning a ``Response`` skips FastAPI's second
    validation of ``response_model`` and its ``jsonable_encoder`` pass (``response_model``
    stays for the OpenAPI schema). The decision is recorded (audit
    queue, metrics) after the body is sent (``service.recommend.Answer``). The runtime is
    read from the app directly, not through a dependency, to keep dependency solving off
    the hot path.
    """
    runtime: Runtime = request.app.state.runtime
    answer = await recommend(body, request.state.request_id, runtime)
    return Response(
        content=answer.response.model_dump_json(),
        media_type="application/json",
        background=BackgroundTask(answer.record),
    )


router.add_api_route(
    "/v1/recommendations",
    post_recommendations,
    methods=["POST"],
    response_model=RecommendationResponse,
    responses={422: {"model": ErrorResponse, "description": "Invalid request; names the field."}},
    summary="Next best offers for one customer",
    tags=["recommendations"],
    openapi_extra=requires("recommend"),
    route_class_override=JsonBodyRoute,
)
# After the hot route: the router tries routes in order, and the hot route matches first.
router.include_router(event_routes.router)
router.include_router(audit_routes.router)


@router.get("/healthz", response_model=HealthResponse, tags=["operations"])
def healthz() -> HealthResponse:
    """The process is alive (no dependency is checked)."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ErrorResponse, "description": "Not ready; detail lists why."}},
    tags=["operations"],
)
def readyz(runtime: Runtime = Depends(get_runtime)) -> ReadinessResponse:
    """Ready = recommender loaded, a feature set is live and Redis answers.

    Models served from the last-known-good cache (registry unreachable at startup) still
    count as loaded; ``detail`` then names them. While the Redis circuit breaker is open,
    Redis counts as down without a ping and ``detail.redis_breaker`` says so; once the
    breaker may probe again, this ping can be the probe that closes it.
    """
    state = runtime.state.current
    checks = {
        "recommender_model": state.recommender is not None,
        "feature_set": state.feature_set is not None,
        "redis": _redis_answers(runtime.redis),
    }
    cached = {slot: src for slot, src in state.model_sources.items() if src != "registry"}
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        breaker = breaker_of(runtime.redis)
        raise NotReadyError(
            {
                "checks": checks,
                "missing": missing,
                **({"models": cached} if cached else {}),
                **({"redis_breaker": breaker.state.value} if breaker is not None else {}),
            }
        )
    return ReadinessResponse(ready=True, checks=checks, missing=[], detail=cached or None)


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics(runtime: Runtime = Depends(get_runtime)) -> Response:
    """Prometheus metrics (text exposition format)."""
    body, content_type = runtime.metrics.render()
    return Response(content=body, media_type=content_type)


def _redis_answers(client: RedisClient) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
