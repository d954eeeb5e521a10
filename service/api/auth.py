"""API-key authentication: who is calling, and may they call this route (401 / 403).

Keys are configured hashed (``NBO_API_KEYS``, see ``core/api_keys.py``) and sent in the
``X-API-Key`` header. A plain ASGI middleware checks them before routing, body parsing or any
dependency runs: a refused request costs one SHA-256 and one dict lookup and reaches nothing
that could change state. (A FastAPI ``Security`` dependency would do the same job but adds
dependency solving to every recommendation, which the request path avoids on purpose.)

Which scope a route needs is declared on the route itself,
``@router.post(..., openapi_extra=requires("recommend"))``, so the OpenAPI document shows it
and this module reads the same declaration when the app is built. Deny by default: a path
that is neither open nor declares a scope (an unknown path; the operations endpoints when
``NBO_AUTH_OPEN_OPERATIONS=false``) still needs a valid key, of any scope. The presented key
is never logged or echoed: messages name the header, the key's configured name and scope.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api_keys import SCOPES, ApiKeyEntry, ApiScope
from core.settings import Settings
from service.api.docs_pages import ASSETS_URL, PAGES
from service.api.errors import error_body, openapi_error
from service.api.middleware import template_pattern
from service.console.urls import CONSOLE_URL
from service.infra.log import fields

log = logging.getLogger(__name__)

SCHEME = "ApiKeyAuth"
HEADER = "X-API-Key"
_HEADER = HEADER.lower().encode()
OPERATIONS_PATHS = ("/healthz", "/readyz", "/metrics")
MAX_KEY_BYTES = 256
"""A longer header value is refused without hashing it (real keys are 47 characters)."""
KEY_STATE = "api_key"
"""``scope["state"]`` entry holding the caller's key name once authenticated."""


def requires(scope: ApiScope) -> dict[str, Any]:
    """``openapi_extra`` of a route callable only with a key holding ``scope``."""
    return {"security": [{SCHEME: [scope]}]}


def declared_scope(operation: Mapping[str, Any]) -> ApiScope | None:
    """The scope an OpenAPI operation declares with ``requires``, if any."""
    for requirement in operation.get("security") or []:
        for scope in requirement.get(SCHEME, []):
            if scope in SCOPES:
                return cast(ApiScope, scope)
    return None


@dataclass(frozen=True)
class AccessPolicy:
    """Everything the middleware needs per request, built once when the app is created."""

    keys: Mapping[bytes, ApiKeyEntry]
    """SHA-256 digest of a key -> its configuration."""
    open_paths: frozenset[str]
    open_prefixes: tuple[str, ...]
    """Paths under these are open too (the docs pages' scripts and styles; the console,
    which refuses every page but its login form without its own session)."""
    path_scopes: Mapping[tuple[str, str], ApiScope]
    """(method, path) of a route without path parameters -> the scope it needs."""
    pattern_scopes: tuple[tuple[str, re.Pattern[str], ApiScope], ...]
    """(method, path regex, scope) of routes with path parameters (``/v1/decisions/{id}``)."""

    @classmethod
    def build(cls, settings: Settings, app: FastAPI) -> AccessPolicy:
        """From the configured keys and the scopes the app's routes declare.

        The scopes are read from the app's OpenAPI document (built here, not cached), so
        what ``/docs`` shows is exactly what is enforced.
        """
        # The console's pages check their own session (service/console/session.py).
        docs = (app.docs_url, app.openapi_url, app.redoc_url, *PAGES, CONSOLE_URL)
        open_paths = {path for path in docs if path}
        if settings.auth_open_operations:
            open_paths.update(OPERATIONS_PATHS)
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        path_scopes: dict[tuple[str, str], ApiScope] = {}
        pattern_scopes: list[tuple[str, re.Pattern[str], ApiScope]] = []
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if (scope := declared_scope(operation)) is None:
                    continue
                if "{" in path:
                    pattern_scopes.append((method.upper(), template_pattern(path), scope))
                else:
                    path_scopes[(method.upper(), path)] = scope
        return cls(
            keys={bytes.fromhex(entry.sha256): entry for entry in settings.api_keys},
            open_paths=frozenset(open_paths),
            open_prefixes=(f"{ASSETS_URL}/", f"{CONSOLE_URL}/"),
            path_scopes=path_scopes,
            pattern_scopes=tuple(pattern_scopes),
        )

    def is_open(self, path: str) -> bool:
        """``path`` needs no key (docs, open operations endpoints, docs assets)."""
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def required_scope(self, method: str, path: str) -> ApiScope | None:
        """The scope a request needs; ``None``: any valid key will do.

        HEAD is checked as GET: Starlette answers HEAD with the GET route.
        """
        if method == "HEAD":
            method = "GET"
        scope = self.path_scopes.get((method, path))
        if scope is not None:
            return scope
        for route_method, pattern, needed in self.pattern_scopes:
            if route_method == method and pattern.match(path):
                return needed
        return None

    def identify(self, presented: bytes) -> ApiKeyEntry | None:
        """The configured key matching ``presented``, if any.

        Looked up by digest: the timing of a dict lookup can only reveal something about
        the SHA-256 of a guess, which says nothing about any configured key.
        """
        return self.keys.get(hashlib.sha256(presented).digest())


class ApiKeyAuth:
    """Refuse requests without a valid key (401) or without the route's scope (403)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.policy.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = _header(scope, _HEADER)
        if presented is None:
            await _refuse(scope, receive, send, 401, "unauthorized", f"missing {HEADER} header")
            return
        entry = self.policy.identify(presented) if len(presented) <= MAX_KEY_BYTES else None
        if entry is None:
            await _refuse(scope, receive, send, 401, "unauthorized", f"invalid API key in {HEADER}")
            return
        needed = self.policy.required_scope(scope["method"], scope["path"])
        if needed is not None and needed not in entry.scopes:
            detail = f"API key {entry.name!r} lacks the scope {needed!r} this route needs"
            await _refuse(scope, receive, send, 403, "forbidden", detail)
            return
        scope.setdefault("state", {})[KEY_STATE] = entry.name
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return cast(bytes, value)
    return None


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, kind: str, detail: str
) -> None:
    headers = {"WWW-Authenticate": f'APIKey header="{HEADER}"'} if status == 401 else None
    response = JSONResponse(error_body(kind, detail), status_code=status, headers=headers)
    await response(scope, receive, send)


def warn_about_configuration(settings: Settings) -> None:
    """Say at startup when the service is open to anyone, or closed to everyone."""
    if settings.auth_disabled:
        log.warning(
            "authentication disabled (NBO_AUTH_DISABLED): every route answers without a key"
        )
    elif not settings.api_keys:
        log.warning(
            "no API keys configured (NBO_API_KEYS): every protected route answers 401; "
            "make one with `nbo keys new`"
        )
    else:
        log.info("api keys", extra=fields(keys=[entry.name for entry in settings.api_keys]))


def document_security(schema: dict[str, Any], policy: AccessPolicy) -> None:
    """Declare the key scheme in an OpenAPI document: required everywhere but open paths."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": HEADER,
        "description": "An API key from `nbo keys new`; its scopes decide the routes it may call.",
    }
    schema["security"] = [{SCHEME: []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path in policy.open_paths:
                operation["security"] = []
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", openapi_error("Missing or invalid API key."))
            if operation.get("security"):
                responses.setdefault("403", openapi_error("The key lacks this route's scope."))


def is_secured(operation: Mapping[str, Any], schema: Mapping[str, Any]) -> bool:
    """Whether an OpenAPI operation needs a key (its own ``security`` or the document's)."""
    return bool(operation.get("security", schema.get("security")))
