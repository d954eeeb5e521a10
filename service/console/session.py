"""Console sessions: who logged in with which API key, and the CSRF token of their forms.

Design: the session lives in Redis under a random 256-bit id; the browser holds only that
id, in a cookie that is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other
site's page sends it) and ``Secure`` whenever the request came over TLS. Why Redis and not
a signed cookie: a signed cookie cannot be revoked before it expires, while here logout
deletes the session at once, every worker sees the same sessions, and no signing secret
has to be configured and rotated. Redis stores the SHA-256 of the id, never the id itself,
so a Redis dump holds no usable session; a session expires ``console_session_seconds``
after its login (key TTL).

Each request re-checks that the key the session was opened with is still configured and
still holds the ``audit`` scope: removing a key from ``NBO_API_KEYS`` ends its sessions.
The key itself is never stored, logged or put in a URL: it is hashed once at login.

CSRF: every state-changing form carries a token. Logged-in forms carry the session's
token (random, kept server-side); the login form, posted before any session exists, uses a
double-submit token: a random value both in a ``SameSite=Strict`` cookie and in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import cast

import orjson
import redis
from starlette.requests import Request
from starlette.responses import Response

from core.api_keys import ApiKeyEntry, hash_key
from core.redis_keys import console_session_key
from core.redis_server import RedisClient
from core.settings import Settings
from service.console.urls import CONSOLE_URL

SESSION_COOKIE = "nbo_console"
LOGIN_CSRF_COOKIE = "nbo_console_login"
CSRF_FIELD = "csrf_token"
SCOPE = "audit"
"""The API-key scope the console needs (the scope of ``GET /v1/decisions/{id}``)."""
MAX_KEY_CHARS = 256
_TOKEN_CHARS = 43  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    key_name: str
    key_sha256: str
    csrf: str
    started_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_token(value: str | None) -> bool:
    """Looks like a token this module made (bounded length, url-safe characters)."""
    return (
        value is not None
        and len(value) == _TOKEN_CHARS
        and all(c.isalnum() or c in "-_" for c in value)
    )


def same_token(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


class LoginRefused(ValueError):
    """The presented key cannot open a console session; the message says why (never the key)."""


def console_key(settings: Settings, presented: str) -> ApiKeyEntry:
    """The configured key matching ``presented``, if it holds the console's scope."""
    if not presented or len(presented) > MAX_KEY_CHARS:
        raise LoginRefused("unknown API key")
    digest = hash_key(presented)
    entry = next((e for e in settings.api_keys if hmac.compare_digest(e.sha256, digest)), None)
    if entry is None:
        raise LoginRefused("unknown API key")
    if SCOPE not in entry.scopes:
        raise LoginRefused(f"API key {entry.name!r} lacks the {SCOPE!r} scope the console needs")
    return entry


class SessionStore:
    """Console sessions in Redis (see the module docstring)."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def _key(self, token: str) -> str:
        return console_session_key(self._settings.console_prefix, _digest(token))

    def open(self, entry: ApiKeyEntry) -> str:
        """A new session for ``entry``; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        session = {
            "key_name": entry.name,
            "key_sha256": entry.sha256,
            "csrf": secrets.token_urlsafe(32),
            "started_at": time.time(),
        }
        self._client.set(
            self._key(token), orjson.dumps(session), ex=self._settings.console_session_seconds
        )
        return token

    def read(self, token: str | None) -> Session | None:
        """The live session of a cookie value; None when absent, expired, or its key was
        removed or lost the scope. A Redis failure reads as no session (log in again)."""
        if not is_token(token):
            return None
        assert token is not None
        try:
            raw = cast(bytes | None, self._client.get(self._key(token)))
        except redis.RedisError:
            return None
        if raw is None:
            return None
        data = orjson.loads(raw)
        still = any(
            e.sha256 == data["key_sha256"] and SCOPE in e.scopes for e in self._settings.api_keys
        )
        if not still:
            return None
        return Session(data["key_name"], data["key_sha256"], data["csrf"], data["started_at"])

    def close(self, token: str | None) -> None:
        if is_token(token):
            assert token is not None
            self._client.delete(self._key(token))


def over_tls(request: Request) -> bool:
    """The request came over TLS. ``request.url.scheme`` is what the server saw, after the
    proxy headers it trusts (uvicorn's ``--forwarded-allow-ips``), and nothing else."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=CONSOLE_URL,
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=CONSOLE_URL, httponly=True, samesite="strict", secure=over_tls(request)
    )
