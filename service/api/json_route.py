"""A route that validates its JSON body with pydantic-core in one call: the hot route's.

FastAPI's generic request handler serves any signature: per request it solves the
dependency graph, decodes the body with ``json.loads``, validates the resulting dict
against the body model, and opens exit stacks for dependencies with ``yield``. The
recommendation route needs none of that generality - one JSON body model, the
``Request``, no dependencies - and it is the route the latency budget is measured on.
:class:`JsonBodyRoute` keeps everything FastAPI gives the route from the outside (its
OpenAPI operation, the middleware and routing in front of it, the error handlers behind
it) and replaces only the handler: ``Model.model_validate_json(body)`` parses and
validates the bytes in one pass of pydantic-core.

The answers to bad input are FastAPI's own: a 422 ``RequestValidationError`` whose
``loc`` starts with ``"body"`` (``json_invalid`` for malformed JSON, ``missing`` for an
empty body), a 400 for a body that is not UTF-8 text. Two differences, on purpose: a body
sent without a JSON ``Content-Type`` is a 422 that says so, where FastAPI validates the
raw bytes against the model and reports a type error; and a non-finite number (``NaN``,
``Infinity``, or ``1e400``, which parses to infinity) anywhere in the body is a 422
``json_invalid`` without the value - JSON has no such numbers, and an ``inf`` echoed in an
error body cannot even be serialised. The validation error never chains the pydantic error
(whose text holds the raw input), so no traceback can carry a customer id into a log.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast, get_type_hints

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.exceptions import HTTPException

M = TypeVar("M", bound=BaseModel)

BODY_PARAMETER = "body"
"""The endpoint parameter that receives the validated body model."""


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` for ``async def endpoint(body: Model, request: Request) -> Response``.

    Use it per route: ``@router.post(path, route_class_override=JsonBodyRoute, ...)``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = cast(Callable[..., Awaitable[Response]], self.endpoint)
        model = body_model(endpoint)

        async def handler(request: Request) -> Response:
            body = await request.body()
            parsed = parse_body(model, body, request.headers.get("content-type"))
            return await endpoint(body=parsed, request=request)

        return handler


def body_model(endpoint: Callable[..., object]) -> type[BaseModel]:
    """The pydantic model the endpoint's ``body`` parameter is annotated with."""
    if not inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"{endpoint.__qualname__}: a JsonBodyRoute endpoint must be async")
    model = get_type_hints(endpoint).get(BODY_PARAMETER)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(
            f"{endpoint.__qualname__}: a JsonBodyRoute endpoint takes "
            f"`{BODY_PARAMETER}: <pydantic model>` (got {model!r})"
        )
    return model


def parse_body(model: type[M], body: bytes, content_type: str | None) -> M:
    """``body`` validated as ``model``; FastAPI's 422 (or 400) errors when it is not one."""
    if not body:
        raise _invalid("missing", (), "Field required")
    if not _is_json(content_type):
        raise _invalid("content_type", (), "Expected a JSON body (Content-Type: application/json)")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:  # as FastAPI answers a body json.loads cannot read
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    # Only a body that failed validation is searched: the request models have no float
    # field, so a non-finite number always fails them (and a valid body costs nothing).
    if all(error["type"] != "json_invalid" for error in errors) and has_non_finite_number(body):
        raise _invalid("json_invalid", (), NON_FINITE_MESSAGE)
    located = [{**error, "loc": (BODY_PARAMETER, *error["loc"])} for error in errors]
    raise RequestValidationError(located)


NON_FINITE_MESSAGE = "JSON numbers must be finite: no NaN, Infinity or out-of-range values"


def has_non_finite_number(body: bytes) -> bool:
    """``body`` (well-formed JSON to pydantic-core) holds ``NaN``, ``Infinity`` or a number
    too large for a double (``1e400``), at any depth."""
    try:
        parsed = from_json(body, allow_inf_nan=False)
    except ValueError:  # the NaN / Infinity literals; the rest of the body parsed before
        return True
    pending = [parsed]
    while pending:
        value = pending.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters allowed."""
    if not content_type:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    main, _, subtype = media_type.partition("/")
    return main == "application" and (subtype == "json" or subtype.endswith("+json"))


def _invalid(kind: str, loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": (BODY_PARAMETER, *loc), "msg": msg}])
