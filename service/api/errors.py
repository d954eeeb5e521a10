"""One error base class carrying its HTTP status; one body shape: ``{"type", "detail"}``.

Validation errors (422) keep FastAPI's error list, whose ``loc`` names the offending field
(e.g. ``["body", "k"]``). Unexpected exceptions become a 500 whose detail points at the
request id in the logs, never at internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    return JSONResponse(
        error_body("validation_error", jsonable_encoder(exc.errors())), status_code=422
    )


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
    request_id = _request_id(request)
    log.error(
        "unhandled error",
        exc_info=exc,
        extra=fields(request_id=request_id, error=type(exc).__name__),
    )
    detail = f"internal error (request id {request_id})" if request_id else "internal error"
    return JSONResponse(error_body("internal_error", detail), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
