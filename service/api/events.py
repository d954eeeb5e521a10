"""``POST /v1/events``: thin - validate, store, acknowledge.

The body is parsed by ``JsonBodyRoute`` (as the recommendation's): one pass of
pydantic-core, and a non-finite number is a 422 ``json_invalid``. The storing is blocking
Redis work, so it runs in the thread pool.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import redis
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.pseudonym import pseudonymiser
from service.api.auth import requires
from service.api.errors import ServiceError, error_body
from service.api.json_route import JsonBodyRoute
from service.api.schemas import ErrorResponse, EventAck, EventIn
from service.infra.breaker import BreakerOpenError
from service.infra.event_store import (
    UNKNOWN_REQUEST_ID,
    EventRejected,
    Stored,
    check_event,
    store_event,
)
from service.infra.log import fields
from service.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter()


class EventStoreUnavailableError(ServiceError):
    status_code = 503
    type = "event_store_unavailable"


MIN_RETRY_AFTER_SECONDS = 1


def unavailable_response(exc: redis.RedisError) -> JSONResponse:
    """503 + ``Retry-After``: the event was not stored, the client should send it again.

    Retrying is safe: events are idempotent by ``event_id``. While the breaker is open the
    hint is the time until it probes Redis again (whole seconds, at least 1).
    """
    wait = exc.retry_after_seconds if isinstance(exc, BreakerOpenError) else 0.0
    seconds = max(MIN_RETRY_AFTER_SECONDS, math.ceil(wait))
    error = EventStoreUnavailableError(
        f"event not stored: Redis unavailable; retry in {seconds} s (same event_id)"
    )
    return JSONResponse(
        error_body(error.type, error.detail),
        status_code=error.status_code,
        headers={"Retry-After": str(seconds)},
    )


def store_event_settled(runtime: Runtime, body: EventIn, now: datetime) -> Stored:
    """``store_event``; if the cited decision is not found, once more after the audit
    trail's write-behind window (``service.infra.audit_writer``): feedback may follow its answer
    within milliseconds. A rejected event stored nothing, so the retry is safe."""
    settings = runtime.settings
    pseudonym = pseudonymiser(settings)
    try:
        return store_event(runtime.redis, settings, body, pseudonym, now)
    except EventRejected as exc:
        if exc.kind != UNKNOWN_REQUEST_ID:
            raise
    runtime.audit.settle()
    return store_event(runtime.redis, settings, body, pseudonym, now)


async def post_event(body: EventIn, request: Request) -> Response:
    """Store a shown / clicked / accepted / declined event; 202 once it is durably appended.

    Idempotent by ``event_id``: a repeat answers 202 with ``status: duplicate`` and is
    counted once. ``shown``, ``declined`` and ``accepted`` update the contact policy at
    once. 422 (naming the field) for an unknown product, a ``request_id`` with no recorded
    decision, or a timestamp too far in the future; nothing is stored from a rejected event.
    503 with ``Retry-After`` when Redis is unavailable (or the breaker is open): not stored.
    """
    runtime: Runtime = request.app.state.runtime
    return await run_in_threadpool(accept_event, body, request.state.request_id, runtime)


def accept_event(body: EventIn, request_id: str, runtime: Runtime) -> Response:
    """The blocking part of :func:`post_event` (checks and Redis calls)."""
    now = datetime.now(UTC)
    settings = runtime.settings
    try:
        check_event(
            body, runtime.state.current.catalogue, now, settings.event_future_tolerance_seconds
        )
        stored = store_event_settled(runtime, body, now)
    except EventRejected as exc:
        raise RequestValidationError(
            [{"type": exc.kind, "loc": ("body", exc.field), "msg": exc.message, "input": exc.value}]
        ) from None
    except redis.RedisError as exc:
        log.error(
            "event not stored",
            extra=fields(request_id=request_id, error=type(exc).__name__),
        )
        runtime.metrics.observe_redis_error("event_write", exc)
        return unavailable_response(exc)
    runtime.metrics.observe_event(body.type, stored.status)
    log.info(
        "event",
        extra=fields(request_id=request_id, type=body.type, status=stored.status),
    )
    ack = EventAck(event_id=body.event_id, status=stored.status, stream_id=stored.stream_id)  # type: ignore[arg-type]
    return Response(ack.model_dump_json(), status_code=202, media_type="application/json")


router.add_api_route(
    "/v1/events",
    post_event,
    methods=["POST"],
    status_code=202,
    response_model=EventAck,
    responses={
        422: {"model": ErrorResponse, "description": "Invalid event; names the field."},
        503: {
            "model": ErrorResponse,
            "description": "Not stored: Redis unavailable; retry after `Retry-After` seconds.",
        },
    },
    summary="Record a customer's response to an offer",
    tags=["events"],
    openapi_extra=requires("events"),
    route_class_override=JsonBodyRoute,
)
