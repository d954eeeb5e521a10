"""``POST /v1/recommendations``: the hot route - parse, decide, answer, record after."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from service.api.auth import requires
from service.api.json_route import JsonBodyRoute
from service.api.schemas import (
    RecommendationRequest,
    RecommendationResponse,
    ValidationErrorResponse,
)
from service.decision.recommend import recommend
from service.runtime import Runtime


async def post_recommendations(body: RecommendationRequest, request: Request) -> Response:
    """Suitable offers for the customer, best first by arbitration priority.

    Always answers 200 when the request is valid: if the customer's features or the model
    are unavailable the answer is the low-risk fallback with ``degraded: true`` and the
    reason. An ``async def`` on the event loop: its one Redis read is awaited with the
    asyncio client (``service.infra.feature_fetch``), and the rest is CPU work that a
    thread-pool hop would not parallelise (one interpreter lock per worker) but would make
    slower.

    The body is parsed and validated in one pass of pydantic-core (``JsonBodyRoute``:
    no dependency solving, no ``json.loads`` then dict validation). The answer is built as
    plain JSON types in the shape of ``RecommendationResponse``
    (``service.decision.recommend.respond``) and serialized by orjson: returning a
    ``Response`` skips FastAPI's validation of ``response_model`` and its
    ``jsonable_encoder`` pass (``response_model`` stays for the OpenAPI schema). The
    decision is recorded (audit queue, metrics) after the body is sent
    (``service.decision.recommend.Answer``). The runtime is read from the app directly,
    not through a dependency, to keep dependency solving off the hot path.
    """
    runtime: Runtime = request.app.state.runtime
    answer = await recommend(body, request.state.request_id, runtime)
    return Response(
        content=orjson.dumps(answer.response),
        media_type="application/json",
        background=BackgroundTask(answer.record),
    )


def add_recommendation_route(router: APIRouter) -> None:
    """Register ``POST /v1/recommendations`` on ``router``.

    ``service.app`` registers it on the application's own router, ahead of the included
    routers (``service.api.routes``): FastAPI resolves an included router lazily per
    request, one nesting level at a time, so a route of the app's own router is matched
    by one comparison where a route two includes deep took ~0.2 ms of matching per
    request (cProfile, CPU clock).
    """
    router.add_api_route(
        "/v1/recommendations",
        post_recommendations,
        methods=["POST"],
        response_model=RecommendationResponse,
        responses={
            422: {
                "model": ValidationErrorResponse,
                "description": "Invalid request; names the field.",
            }
        },
        summary="Next best offers for one customer",
        tags=["recommendations"],
        openapi_extra=requires("recommend"),
        route_class_override=JsonBodyRoute,
    )
