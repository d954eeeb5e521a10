"""``POST /v1/events``: thin - validate, store, acknowledge."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from core.pseudonym import pseudonymiser
from service.errors import ServiceError
from service.events import EventRejected, check_event, store_event
from service.log import fields
from service.runtime import Runtime
from service.schemas import ErrorResponse, EventAck, EventIn

log = logging.getLogger(__name__)

router = APIRouter()


class EventStoreUnavailableError(ServiceError):
    status_code = 503
    type = "event_store_unavailable"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventAck,
    responses={
        422: {"model": ErrorResponse, "description": "Invalid event; names the field."},
        503: {"model": ErrorResponse, "description": "Not stored: Redis unavailable."},
    },
    summary="Record a customer's response to an offer",
    tags=["events"],
)
def post_event(
    body: EventIn, request: Request, runtime: Runtime = Depends(get_runtime)
) -> EventAck:
    """Store a shown / clicked / accepted / declined event; 202 once it is durably appended.

    Idempotent by ``event_id``: a repeat answers 202 with ``status: duplicate`` and is
    counted once. ``shown``, ``declined`` and ``accepted`` update the contact policy at
    once. 422 (naming the field) for an unknown product, a ``request_id`` with no recorded
    decision, or a timestamp too far in the future; nothing is stored from a rejected event.
    """
    now = datetime.now(UTC)
    settings = runtime.settings
    try:
        check_event(
            body, runtime.state.current.catalogue, now, settings.event_future_tolerance_seconds
        )
        stored = store_event(runtime.redis, settings, body, pseudonymiser(settings), now)
    except EventRejected as exc:
        raise RequestValidationError(
            [{"type": exc.kind, "loc": ("body", exc.field), "msg": exc.message, "input": exc.value}]
        ) from None
    except redis.RedisError as exc:
        log.error(
            "event not stored",
            extra=fields(request_id=request.state.request_id, error=type(exc).__name__),
        )
        runtime.metrics.observe_redis_error("event_write", exc)
        raise EventStoreUnavailableError("event not stored: Redis unavailable; retry") from None
    runtime.metrics.observe_event(body.type, stored.status)
    log.info(
        "event",
        extra=fields(request_id=request.state.request_id, type=body.type, status=stored.status),
    )
    return EventAck(event_id=body.event_id, status=stored.status, stream_id=stored.stream_id)  # type: ignore[arg-type]
