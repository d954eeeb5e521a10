"""The guards in front of every route: API keys, rate limits, body encoding and size.

Order, outermost first: ``ApiKeyAuth`` (401/403) -> ``RateLimit`` (429, per key) ->
``IdentityEncodingOnly`` (415) -> ``BodyLimit`` (413) -> the routes. Each is plain ASGI
and answers before any route runs, so a refused request changes no state, and each adds
the answers it may give to the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI

from core.settings import Settings
from service.api.auth import AccessPolicy, ApiKeyAuth, document_security, warn_about_configuration
from service.api.body_limit import BodyLimit, IdentityEncodingOnly, document_body_answers
from service.api.rate_limit import KeyRateLimits, RateLimit, document_rate_limit


def install_guards(app: FastAPI, settings: Settings) -> None:
    """Add the guards as middleware; call after every router is included."""
    documenters: list[Callable[[dict[str, Any]], None]] = []
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(IdentityEncodingOnly)
    warn_about_configuration(settings)
    if not settings.auth_disabled:
        limits = KeyRateLimits.from_settings(settings)
        if limits.active:
            app.add_middleware(RateLimit, limits=limits)
        policy = AccessPolicy.build(settings, app)
        app.add_middleware(ApiKeyAuth, policy=policy)
        documenters.append(partial(document_security, policy=policy))
        if limits.active:
            documenters.append(document_rate_limit)
    documenters.append(partial(document_body_answers, max_bytes=settings.max_body_bytes))
    _document(app, documenters)


def _document(app: FastAPI, documenters: list[Callable[[dict[str, Any]], None]]) -> None:
    """Run ``documenters`` over the OpenAPI document once, when FastAPI first builds it."""
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            for document in documenters:
                document(schema)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
