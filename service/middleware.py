"""Per request: a request id, one structured access-log line and the HTTP metrics.

A plain ASGI middleware (not ``BaseHTTPMiddleware``: no extra task per request). The route
label is the matched route's template (``/v1/recommendations``), read from the scope after
routing (FastAPI sets ``scope["route"]`` for its API routes only, so plain routes such as
``/docs`` are matched against the router's templates); a request no route matched is
labelled ``<unmatched>``, so a raw path never becomes a label.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.log import fields
from service.metrics import UNMATCHED_ROUTE, ServiceMetrics

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = b"x-request-id"


class RequestObservation:
    """Assign ``scope["state"]["request_id"]``, log and measure every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app raises before starting a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope, self.routes)
            self.metrics.observe_request(route, scope["method"], status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra=fields(
                        request_id=request_id,
                        method=scope["method"],
                        route=route,
                        status=status,
                        duration_ms=round(seconds * 1000, 3),
                    ),
                )


def _route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
