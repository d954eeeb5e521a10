"""Refuse request bodies the service will not read, before the app sees them: an encoded
body (``Content-Encoding`` other than ``identity``) with 415, one above
``NBO_MAX_BODY_BYTES`` with 413.

The service does not decompress: a gzip body would otherwise reach the JSON parser as
binary and get a misleading 400, and decompressing would let a small body expand past the
size limit. :class:`IdentityEncodingOnly` says what is wrong instead.

A declared ``Content-Length`` is checked from the headers alone (the server - uvicorn -
enforces that the body matches it), so a normal request costs one header scan. A body
without one (``Transfer-Encoding: chunked``) is read here up to the limit and handed on in
one piece, so an endless stream is cut off after ``max_bytes``. Either way a refused request
never reaches a route and changes no state.

(Starlette 1.x has a ``RequestBodyLimitMiddleware`` too, but it refuses only once a route
reads the body, with a plain-text answer; this one refuses up front in the API's error shape.)
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_body, openapi_error


class IdentityEncodingOnly:
    """415 for a request whose ``Content-Encoding`` is anything but ``identity``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"content-encoding" and not _identity(value):
                    detail = "Content-Encoding not supported: send the body uncompressed (identity)"
                    body = error_body("unsupported_media_type", detail)
                    await JSONResponse(body, status_code=415)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _identity(value: bytes) -> bool:
    codings = [c.strip().lower() for c in value.split(b",")]
    return all(c in (b"", b"identity") for c in codings)


class BodyLimit:
    """413 for a body longer than ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_bytes} bytes"
        response = JSONResponse(error_body("payload_too_large", detail), status_code=413)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; a malformed value counts as too large."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then the real channel (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def document_body_answers(schema: dict[str, Any], max_bytes: int) -> None:
    """Add 413 (too large), 415 (encoded) and 400 (not text at all) to every operation that
    takes a body.

    The 400 is FastAPI's answer to a body it cannot even decode (e.g. invalid UTF-8);
    malformed JSON is a 422 ``json_invalid`` naming the position.
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                responses = operation.setdefault("responses", {})
                responses.setdefault("400", openapi_error("Request body could not be decoded."))
                responses.setdefault(
                    "413", openapi_error(f"Request body larger than {max_bytes} bytes.")
                )
                responses.setdefault("415", openapi_error("Content-Encoding other than identity."))
