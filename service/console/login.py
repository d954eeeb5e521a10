"""Login, logout, the console's home and its style sheet.

``public`` holds the only routes reachable without a session (the login form and its
post); every other console route depends on the session (``service.console.web``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.console.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRefused,
    clear_cookie,
    console_key,
    is_token,
    same_token,
    set_cookie,
)
from service.console.urls import CONSOLE_URL, LOGIN_URL
from service.console.web import (
    HERE,
    SessionDep,
    TokenField,
    problem,
    refuse_csrf,
    render,
    sessions,
)
from service.runtime import RuntimeDep

STATIC = {path.name: path.read_bytes() for path in (HERE / "static").iterdir() if path.is_file()}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
LOGIN_TOKEN_SECONDS = 600

public = APIRouter(prefix=CONSOLE_URL, include_in_schema=False)
router = APIRouter(prefix=CONSOLE_URL, include_in_schema=False)


def login_form(request: Request, status: int = 200, message: str | None = None) -> HTMLResponse:
    """The login form, with its double-submit CSRF token (cookie and hidden field)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    if token is None or not is_token(token):
        token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status, token=token, message=message)
    set_cookie(response, request, LOGIN_CSRF_COOKIE, token, LOGIN_TOKEN_SECONDS)
    return response


@public.get("/login")
def login_page(request: Request, runtime: RuntimeDep) -> Response:
    if sessions(runtime).read(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(f"{CONSOLE_URL}/customers", 303)
    return login_form(request)


@public.post("/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    api_key: Annotated[str | None, Form()] = None,
    token: TokenField = None,
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not is_token(expected) or not same_token(str(expected), token):
        return refuse_csrf(request, None)
    try:
        entry = console_key(runtime.settings, (api_key or "").strip())
    except LoginRefused as exc:
        return login_form(request, 401, f"Login refused: {exc}.")
    try:
        opened = sessions(runtime).open(entry)
    except redis.RedisError:
        return problem(request, None, 503, "Redis unavailable", "Log in again in a moment.")
    response = RedirectResponse(f"{CONSOLE_URL}/customers", 303)
    set_cookie(response, request, SESSION_COOKIE, opened, runtime.settings.console_session_seconds)
    clear_cookie(response, request, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request, runtime: RuntimeDep, session: SessionDep, token: TokenField = None
) -> Response:
    if not same_token(session.csrf, token):
        return refuse_csrf(request, session)
    try:
        sessions(runtime).close(request.cookies.get(SESSION_COOKIE))
    except redis.RedisError:
        return problem(request, session, 503, "Redis unavailable", "Log out again in a moment.")
    response = RedirectResponse(LOGIN_URL, 303)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


@router.get("")
def home(session: SessionDep) -> Response:
    return RedirectResponse(f"{CONSOLE_URL}/customers", 303)


@router.get("/static/{name}")
def static(request: Request, name: str, session: SessionDep) -> Response:
    body = STATIC.get(name)
    if body is None:
        return problem(request, session, 404, "Not found", "No such file.")
    kind = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=kind, headers=headers)
