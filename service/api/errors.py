"""One error base class carrying its HTTP status; one body shape: ``{"type", "detail"}``.

Validation errors (422) keep FastAPI's error list, whose ``loc`` names the offending field
(e.g. ``["body", "k"]``); an error whose echoed ``input`` is no JSON (a non-finite number)
loses its ``input`` rather than turning the 422 into a 500. Unexpected exceptions become a
500 whose detail points at the request id in the logs, never at internals; the log line
names the exception types and frames, not the exceptions' messages (which may hold request
values such as a customer id). :class:`UnexpectedErrors` answers them itself, because
Starlette's outermost handler re-raises after answering and the server then logs the
whole traceback, messages included (and drops the keep-alive connection).
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.infra.log import fields

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the service's own errors; subclasses set ``status_code`` and ``type``."""

    status_code = 500
    type = "service_error"

    def __init__(self, detail: str | dict[str, Any]) -> None:
        super().__init__(str(detail))
        self.detail = detail


class NotReadyError(ServiceError):
    """The service cannot give personal recommendations yet (``detail`` says what is missing)."""

    status_code = 503
    type = "not_ready"


def error_body(type_: str, detail: object) -> dict[str, object]:
    return {"type": type_, "detail": detail}


def openapi_error(description: str) -> dict[str, Any]:
    """An OpenAPI response object whose body is an ``ErrorResponse``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(error_body(exc.type, exc.detail), status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_json_safe(error) for error in jsonable_encoder(exc.errors())]
    return JSONResponse(error_body("validation_error", errors), status_code=422)


def _json_safe(error: dict[str, Any]) -> dict[str, Any]:
    """``error`` without its ``input`` when that holds a non-finite number."""
    if "input" in error and not _finite(error["input"]):
        return {key: value for key, value in error.items() if key != "input"}
    return error


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(kind, exc.detail), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return internal_error(_request_id(request), exc)


def internal_error(request_id: str | None, exc: BaseException) -> JSONResponse:
    """Log ``exc`` without its message (see the module docstring) and answer 500."""
    log.error(
        "unhandled error",
        extra=fields(request_id=request_id, error=type(exc).__name__, trace=_frames(exc)),
    )
    detail = f"internal error (request id {request_id})" if request_id else "internal error"
    return JSONResponse(error_body("internal_error", detail), status_code=500)


class UnexpectedErrors:
    """Turn an exception the app lets through into a 500 answer, without re-raising it.

    Install it inside the access-log middleware (so the 500 is logged and counted) and
    outside the guards and routes. If the response had already started there is nothing
    left to answer: the exception is logged and the server ends the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            response = internal_error(scope.get("state", {}).get("request_id"), exc)
            if not started:
                await response(scope, receive, send)


def _frames(exc: BaseException) -> list[str]:
    """Where ``exc`` (and each exception it chains) was raised: type, file, line, function."""
    frames = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames.append(type(current).__name__)
        frames += [
            f"  {f.filename}:{f.lineno} in {f.name}"
            for f in traceback.extract_tb(current.__traceback__)
        ]
        current = current.__cause__ or current.__context__
    return frames


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
