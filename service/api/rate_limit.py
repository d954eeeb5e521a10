"""Rate limits per API key (429 with ``Retry-After``), counted in this worker's memory.

``NBO_RATE_LIMIT`` (e.g. ``"1000/second"``) applies to every key; a key's own ``rate_limit``
in ``NBO_API_KEYS`` overrides it (``"off"`` for none). The counting is the ``limits``
library's sliding-window counter in memory: constant time and memory per key,
and no Redis round trip added to a recommendation (its latency budget allows exactly one).
The price is that each uvicorn worker counts on its own: with W workers a key gets up to W
times the limit in total, so configure ``limit / W`` when the total matters (docs/operations.md).

Runs after ``service.api.auth``, which names the caller's key; requests without a key (open
paths, or every request when ``NBO_AUTH_DISABLED``) are not limited. A refused request
never reaches the app, so it changes no state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from service.api.auth import KEY_STATE, is_secured
from service.api.errors import error_body, openapi_error


class KeyRateLimits:
    """The limit of every configured key, and the counters that enforce them."""

    def __init__(self, limits: Mapping[str, RateLimitItem | None]) -> None:
        self._limits = dict(limits)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRateLimits:
        default = settings.rate_limit
        chosen = {entry.name: entry.rate_limit or default for entry in settings.api_keys}
        return cls({name: _parse(limit) for name, limit in chosen.items()})

    @property
    def active(self) -> bool:
        """Whether any key is limited at all (no middleware is needed otherwise)."""
        return any(limit is not None for limit in self._limits.values())

    def hit(self, key_name: str) -> float | None:
        """Count one request of ``key_name``: ``None`` if allowed, else seconds to wait."""
        limit = self._limits.get(key_name)
        if limit is None or self._limiter.hit(limit, key_name):
            return None
        reset_at = self._limiter.get_window_stats(limit, key_name).reset_time
        return max(1.0, math.ceil(reset_at - time.time()))

    def describe(self, key_name: str) -> str:
        limit = self._limits.get(key_name)
        return "none" if limit is None else str(limit)


def _parse(limit: str | None) -> RateLimitItem | None:
    return None if limit is None or limit == "off" else parse(limit)


class RateLimit:
    """Answer 429 once the caller's key has used up its limit."""

    def __init__(self, app: ASGIApp, limits: KeyRateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key_name = scope.get("state", {}).get(KEY_STATE) if scope["type"] == "http" else None
        wait = self.limits.hit(key_name) if key_name is not None else None
        if key_name is None or wait is None:
            await self.app(scope, receive, send)
            return
        detail = (
            f"rate limit of API key {key_name!r} ({self.limits.describe(key_name)}) exceeded; "
            f"retry after {wait:.0f} s"
        )
        response = JSONResponse(
            error_body("rate_limited", detail),
            status_code=429,
            headers={"Retry-After": f"{wait:.0f}"},
        )
        await response(scope, receive, send)


def document_rate_limit(schema: dict[str, Any]) -> None:
    """Add the 429 answer to every OpenAPI operation that needs a key."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if is_secured(operation, schema):
                response = openapi_error("Rate limit of this API key exceeded.")
                response["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying.",
                        "schema": {"type": "integer"},
                    }
                }
                operation.setdefault("responses", {}).setdefault("429", response)
