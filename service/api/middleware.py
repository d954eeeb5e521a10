"""Per request: a request id, one structured access-log line and the HTTP metrics.

A plain ASGI middleware (not ``BaseHTTPMiddleware``: no extra task per request). The route
label is the matched route's template (``/v1/recommendations``), read from the scope after
routing. A request the guards refused before routing (401, 403, 413, 429) has no route in
its scope, and neither have plain routes such as ``/docs``: those paths are matched
against the templates of the app's OpenAPI document and its plain routes
(:class:`RouteTemplates`) - so ``/v1/decisions/{request_id}`` is the label of a refused
``GET /v1/decisions/abc``. A path no template matches is labelled ``<unmatched>``, so a
raw path (which may hold an identifier) never becomes a label.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.infra.log import fields
from service.infra.metrics import UNMATCHED_ROUTE, ServiceMetrics

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = b"x-request-id"


class RequestObservation:
    """Assign ``scope["state"]["request_id"]``, log and measure every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

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
            route = self.templates.label(scope)
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


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the paths of a route template: each ``{param}`` is one segment."""
    return re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")


class RouteTemplates:
    """Route template of a request path, for requests that never reached a route.

    Built on first use from ``document()`` (the app's OpenAPI document: every API route,
    including those of included routers) and ``plain_paths()`` (routes outside the
    schema, such as ``/docs``), because at construction time the app's routes may not all
    be registered yet.
    """

    def __init__(
        self,
        document: Callable[[], Mapping[str, Any]],
        plain_paths: Callable[[], list[str]],
    ) -> None:
        self._document = document
        self._plain_paths = plain_paths
        self._exact: frozenset[str] | None = None
        self._patterns: tuple[tuple[re.Pattern[str], str], ...] = ()

    def label(self, scope: Scope) -> str:
        """The matched route's template, else the template the path fits, else unmatched."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        return self.template(scope["path"])

    def template(self, path: str) -> str:
        if self._exact is None:
            self._build()
        assert self._exact is not None
        if path in self._exact:
            return path
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return UNMATCHED_ROUTE

    def _build(self) -> None:
        templates = {*self._document().get("paths", {}), *self._plain_paths()}
        self._patterns = tuple((template_pattern(t), t) for t in sorted(templates) if "{" in t)
        self._exact = frozenset(t for t in templates if "{" not in t)
