"""What every console page shares: the templates, the security headers, the session
dependency (no session: a redirect to the login page) and the CSRF refusal."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from service.console.session import CSRF_FIELD, SESSION_COOKIE, Session, SessionStore
from service.console.urls import CONSOLE_URL, LOGIN_URL
from service.runtime import Runtime, RuntimeDep

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
LOGIN_CSS = (HERE / "inline" / "login.css").read_text(encoding="utf-8")
"""The pages shown without a session (login, its refusals) cannot load the style sheet,
which needs a session: they inline this, allowed by its hash in the policy below."""
_LOGIN_CSS_HASH = base64.b64encode(hashlib.sha256(LOGIN_CSS.encode()).digest()).decode()
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'self' 'sha256-{_LOGIN_CSS_HASH}'; script-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No live session: answered with a redirect to the login page."""


def login_redirect(request: Request, exc: Exception) -> Response:
    return RedirectResponse(LOGIN_URL, status_code=303, headers=SECURITY_HEADERS)


def sessions(runtime: Runtime) -> SessionStore:
    return SessionStore(runtime.redis, runtime.settings)


def current_session(request: Request, runtime: RuntimeDep) -> Session:
    """The request's live session, else :class:`LoginRequired`."""
    session = sessions(runtime).read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired
    return session


SessionDep = Annotated[Session, Depends(current_session)]
TokenField = Annotated[str | None, Form(alias=CSRF_FIELD)]


def render(
    request: Request,
    template: str,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf_field": CSRF_FIELD,
            "console": CONSOLE_URL,
            "login_css": LOGIN_CSS,
            **context,
        },
        status_code=status,
        headers=SECURITY_HEADERS,
    )
    return response


def problem(
    request: Request, session: Session | None, status: int, title: str, detail: str
) -> HTMLResponse:
    return render(request, "problem.html", session, status, title=title, detail=detail)


def refuse_csrf(request: Request, session: Session | None) -> HTMLResponse:
    return problem(
        request,
        session,
        403,
        "Form refused",
        "The form's security token is missing or stale: reload the page and send it again.",
    )
