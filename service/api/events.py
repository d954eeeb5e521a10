"""``POST /v1/events``: thin - validate, store, acknowledge.

The body is parsed by ``JsonBodyRoute`` (as the recommendation's): one pass of
pydantic-core, and a non-finite number is a 422 ``json_invalid``. The storing is blocking
Redis work, so it runs in the thread pool.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import redis
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from features.audit_export import read_decision
from service.api.auth import requires
from service.api.errors import ServiceError, error_body
from service.api.json_route import JsonBodyRoute
from service.api.schemas import ErrorResponse, EventAck, EventIn, ValidationErrorResponse
from service.decision.feedback import CitedDecision, check_against_decision, check_event
from service.infra.breaker import BreakerOpenError
from service.infra.event_store import UNKNOWN_REQUEST_ID, EventRejected, store_event
from service.infra.log import fields
from service.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter()


class EventStoreUnavailableError(ServiceError):
    status_code = 503
    type = "event_store_unavailable"


class EventConflictError(ServiceError):
    """The event id was used before for an event with other content (nothing stored)."""

    status_code = 409
    type = "event_conflict"


MIN_RETRY_AFTER_SECONDS = 1


def unavailable_response(exc: redis.RedisError) -> JSONResponse:
    """503 + ``Retry-After``: the event may not have been stored; send it again.

    "May": after a timeout Redis may still have run the script, which a retry then reports
    as a ``duplicate``. Retrying is safe: events are idempotent by ``event_id``. While the
    breaker is open the hint is the time until it probes Redis again (whole seconds, at
    least 1).
    """
    wait = exc.retry_after_seconds if isinstance(exc, BreakerOpenError) else 0.0
    seconds = max(MIN_RETRY_AFTER_SECONDS, math.ceil(wait))
    error = EventStoreUnavailableError(
        f"event may not have been stored: Redis unavailable; retry in {seconds} s with the "
        "same event_id"
    )
    return JSONResponse(
        error_body(error.type, error.detail),
        status_code=error.status_code,
        headers={"Retry-After": str(seconds)},
    )


def cited_decision(runtime: Runtime, body: EventIn) -> CitedDecision:
    """The decision the event's ``request_id`` names; if it is not found, looked up once
    more after the audit trail's write-behind window (``service.infra.audit_writer``):
    feedback may follow its answer within milliseconds. Raises :class:`EventRejected`
    (``unknown_request_id``) when it is still not found."""
    record = read_decision(runtime.redis, runtime.settings, body.request_id, features=False)
    if record is None:
        runtime.audit.settle()
        record = read_decision(runtime.redis, runtime.settings, body.request_id, features=False)
    if record is None:
        raise EventRejected(
            "request_id",
            UNKNOWN_REQUEST_ID,
            "no recorded decision with this request_id",
            body.request_id,
        )
    return CitedDecision.from_record(record, runtime.state.current.catalogue)


async def post_event(body: EventIn, request: Request) -> Response:
    """Store a shown / clicked / accepted / declined event; 202 once it is durably appended.

    The event must be a response to an offer of the decision its ``request_id`` names:
    that decision's customer, one of its offered products (or a retention treatment it
    ranked), its channel, and a timestamp neither before the decision nor in the future
    (each beyond ``NBO_EVENT_FUTURE_TOLERANCE_SECONDS`` of clock skew) - else 422 naming
    the field, and nothing is stored. Idempotent by ``event_id``: the same event again
    answers 202 with ``status: duplicate`` and is counted once; another event under a used
    ``event_id`` is a 409, nothing stored. ``shown``, ``declined`` and ``accepted`` update
    the contact policy at once. 503 with ``Retry-After`` when Redis is unavailable (or the
    breaker is open): the event may not have been stored; retry with the same event_id.
    """
    runtime: Runtime = request.app.state.runtime
    return await run_in_threadpool(accept_event, body, request.state.request_id, runtime)


def accept_event(body: EventIn, request_id: str, runtime: Runtime) -> Response:
    """The blocking part of :func:`post_event`: checks, then two Redis round trips (read
    the cited decision, store the event)."""
    now = runtime.clock()
    settings = runtime.settings
    tolerance = settings.event_future_tolerance_seconds
    try:
        check_event(body, runtime.state.current.catalogue, now, tolerance)
        pseudonym = pseudonymiser(settings)(body.customer_id)
        check_against_decision(body, pseudonym, cited_decision(runtime, body), tolerance)
        stored = store_event(runtime.redis, settings, body, pseudonym, now)
    except EventRejected as exc:
        raise RequestValidationError(
            [{"type": exc.kind, "loc": ("body", exc.field), "msg": exc.message, "input": exc.value}]
        ) from None
    except redis.RedisError as exc:
        log.error(
            "event not acknowledged",
            extra=fields(request_id=request_id, error=type(exc).__name__),
        )
        runtime.metrics.observe_redis_error("event_write", exc)
        return unavailable_response(exc)
    log.info("event", extra=fields(request_id=request_id, type=body.type, status=stored.status))
    if stored.status == "conflict":
        raise EventConflictError(
            f"event_id {body.event_id!r} was used for an event with other content "
            f"(stream id {stored.stream_id}); nothing stored: send a new event_id"
        )
    runtime.metrics.observe_event(body.type, stored.status)
    ack = EventAck(event_id=body.event_id, status=stored.status, stream_id=stored.stream_id)
    return Response(ack.model_dump_json(), status_code=202, media_type="application/json")


def document_product_ids(app: FastAPI, catalogue: Catalogue) -> None:
    """List the catalogue's product ids as the ``enum`` of ``EventIn.product_id`` in the
    app's OpenAPI document, so that the schema predicts the 422 of an unknown product.

    The ids come from the catalogue file in force, not from code: the document is patched
    once, when FastAPI first builds it.
    """
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build_openapi()
        if first:
            event = schema["components"]["schemas"][EventIn.__name__]
            event["properties"]["product_id"]["enum"] = list(catalogue.ids)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


router.add_api_route(
    "/v1/events",
    post_event,
    methods=["POST"],
    status_code=202,
    response_model=EventAck,
    responses={
        409: {
            "model": ErrorResponse,
            "description": "The event_id was used for another event; nothing stored.",
        },
        422: {
            "model": ValidationErrorResponse,
            "description": "Invalid event, or not matching the decision it cites; names the field.",
        },
        503: {
            "model": ErrorResponse,
            "description": "Redis unavailable: the event may not have been stored; retry "
            "after `Retry-After` seconds with the same event_id.",
        },
    },
    summary="Record a customer's response to an offer",
    tags=["events"],
    openapi_extra=requires("events"),
    route_class_override=JsonBodyRoute,
)
