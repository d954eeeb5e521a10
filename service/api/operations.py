"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``.

Open without a key by default (``NBO_AUTH_OPEN_OPERATIONS``): meant for the orchestrator's
probes and the Prometheus scraper on the operators' network.
"""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response

from core.redis_server import RedisClient
from service.api.errors import NotReadyError
from service.api.schemas import ErrorResponse, HealthResponse, ReadinessResponse
from service.infra.redis_guard import breaker_of
from service.runtime import RuntimeDep

router = APIRouter()


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
def readyz(runtime: RuntimeDep) -> ReadinessResponse:
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
def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics (text exposition format)."""
    body, content_type = runtime.metrics.render()
    return Response(content=body, media_type=content_type)


def _redis_answers(client: RedisClient) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
