"""The console's routes: thin, each one checks its input, asks a view module, renders.

Every route but the login form needs a live session (:func:`current_session`; without one
the browser is sent to the login page), and every form that changes state checks its CSRF
token. Bad input is a page that says what is wrong (404, 422), never a stack trace. The raw
customer id entered in the look-up form is hashed at once and goes nowhere else: not into
a URL, a page, a log line or a metric label.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import redis
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from core.pseudonym import PSEUDONYM_PATTERN, pseudonymiser
from features.audit_export import read_decision
from features.outcomes import OutcomesError
from service.console import customer_view, decision_view, models_view, outcomes_view, timeline
from service.console.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRefused,
    Session,
    SessionStore,
    clear_cookie,
    console_key,
    is_token,
    same_token,
    set_cookie,
)
from service.console.urls import CONSOLE_URL, LOGIN_URL
from service.runtime import Runtime, RuntimeDep

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
STATIC = {path.name: path.read_bytes() for path in (HERE / "static").iterdir() if path.is_file()}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PSEUDONYM = re.compile(PSEUDONYM_PATTERN)
REQUEST_ID = re.compile(decision_view.REQUEST_ID_PATTERN)
LOGIN_TOKEN_SECONDS = 600
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

public = APIRouter(prefix=CONSOLE_URL, include_in_schema=False)
router = APIRouter(prefix=CONSOLE_URL, include_in_schema=False)


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


# --- login and logout ---------------------------------------------------------------------


def login_form(request: Request, status: int = 200, message: str | None = None) -> HTMLResponse:
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
    response = RedirectResponse(f"{CONSOLE_URL}/customers", 303)
    set_cookie(
        response,
        request,
        SESSION_COOKIE,
        sessions(runtime).open(entry),
        runtime.settings.console_session_seconds,
    )
    clear_cookie(response, request, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request, runtime: RuntimeDep, session: SessionDep, token: TokenField = None
) -> Response:
    if not same_token(session.csrf, token):
        return refuse_csrf(request, session)
    sessions(runtime).close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(LOGIN_URL, 303)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


@router.get("")
def home(session: SessionDep) -> Response:
    return RedirectResponse(f"{CONSOLE_URL}/customers", 303)


@router.get("/static/{name}")
def static(name: str, session: SessionDep) -> Response:
    body = STATIC.get(name)
    if body is None:
        return Response("not found", 404, media_type="text/plain")
    kind = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
    return Response(body, media_type=kind, headers={"Cache-Control": "private, max-age=300"})


# --- customers ----------------------------------------------------------------------------


@router.get("/customers")
def lookup_page(request: Request, session: SessionDep) -> Response:
    return render(request, "lookup.html", session)


@router.post("/customers")
def lookup(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    customer_id: Annotated[str | None, Form()] = None,
    token: TokenField = None,
) -> Response:
    if not same_token(session.csrf, token):
        return refuse_csrf(request, session)
    entered = (customer_id or "").strip()
    if not CUSTOMER_ID.match(entered):
        message = "customer_id: enter the bank's customer id, 1 to 64 letters, digits, '_' or '-'"
        return render(request, "lookup.html", session, 422, message=message)
    pseudonym = pseudonymiser(runtime.settings)(entered)
    return RedirectResponse(f"{CONSOLE_URL}/customers/{pseudonym}", 303)


def _page_number(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() and len(text) < 7 else 1


@router.get("/customers/{pseudonym}")
def customer_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    pseudonym: str,
    page: str | None = None,
) -> Response:
    if not PSEUDONYM.match(pseudonym):
        return problem(
            request,
            session,
            422,
            "Malformed customer address",
            "A customer page is addressed by a pseudonym of 64 lowercase hex characters; "
            "look the customer up by id instead.",
        )
    now = datetime.now(UTC)
    try:
        profile = customer_view.profile(runtime, pseudonym, now.date())
        contact = customer_view.contact_view(
            runtime.redis, runtime, pseudonym, profile.tier if profile else None, now
        )
        found = timeline.read_page(runtime.redis, runtime.settings, pseudonym, _page_number(page))
    except redis.RedisError:
        return problem(request, session, 503, "Redis unavailable", "Try again in a moment.")
    if profile is None and found.total == 0 and contact.entries == 0:
        return problem(
            request,
            session,
            404,
            "Unknown customer",
            "No customer with this id is known: no record in the live feature set, no "
            "recorded decision and no contact history.",
        )
    level_days = runtime.settings.risk_assessment_validity_days
    catalogue = runtime.state.current.catalogue
    rows = []
    for record in found.decisions:
        level, why = decision_view.customer_level(record, level_days)
        rows.append(
            {
                "record": record,
                "level_reason": why,
                "offers": decision_view.offer_lines(record.get("offers") or [], catalogue, level),
            }
        )
    return render(
        request,
        "customer.html",
        session,
        pseudonym=pseudonym,
        profile=profile,
        contact=contact,
        timeline=found,
        rows=rows,
    )


# --- decisions ----------------------------------------------------------------------------


@router.get("/decisions/{request_id}")
def decision_page(
    request: Request, runtime: RuntimeDep, session: SessionDep, request_id: str
) -> Response:
    if not REQUEST_ID.match(request_id):
        return problem(
            request,
            session,
            422,
            "Malformed request id",
            "A request id is 32 lowercase hex characters, as in a recommendation's answer.",
        )
    try:
        record = read_decision(runtime.redis, runtime.settings, request_id)
        if record is None:  # perhaps still in a write-behind queue
            runtime.audit.settle()
            record = read_decision(runtime.redis, runtime.settings, request_id)
        events = timeline.events_of(runtime.redis, runtime.settings, record) if record else []
    except redis.RedisError:
        return problem(request, session, 503, "Redis unavailable", "Try again in a moment.")
    if record is None:
        return problem(
            request,
            session,
            404,
            "Unknown decision",
            f"No recorded decision {request_id}: unknown, or older than the audit retention "
            "(`nbo audit export` keeps older ones).",
        )
    level, why = decision_view.customer_level(
        record, runtime.settings.risk_assessment_validity_days
    )
    catalogue = runtime.state.current.catalogue
    return render(
        request,
        "decision.html",
        session,
        record=record,
        level=level,
        level_reason=why,
        offers=decision_view.offer_lines(record.get("offers") or [], catalogue, level),
        holdout=decision_view.offer_lines(record.get("holdout_offers") or [], catalogue, level),
        events=events,
    )


# --- outcomes -----------------------------------------------------------------------------


def _window_form(since: str | None, until: str | None, window_days: str, by: str) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {
        "since": since or (today - timedelta(days=30)).isoformat(),
        "until": until or today.isoformat(),
        "window_days": window_days,
        "by": by,
    }


@router.get("/outcomes")
def outcomes_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    since: str | None = None,
    until: str | None = None,
    window_days: str = "30",
    by: str = "variant",
) -> Response:
    form = _window_form(since, until, window_days, by)
    if since is None and until is None:
        return render(request, "outcomes.html", session, form=form, result=None)
    try:
        window = outcomes_view.parse_window(form["since"], form["until"], window_days, by)
    except outcomes_view.OutcomesFormError as exc:
        return render(request, "outcomes.html", session, 422, form=form, message=str(exc))
    try:
        result = outcomes_view.reports.get(runtime, window)
    except OutcomesError as exc:
        return render(request, "outcomes.html", session, 422, form=form, message=str(exc))
    except (OSError, redis.RedisError) as exc:
        return render(request, "outcomes.html", session, 503, form=form, message=str(exc))
    query = urlencode(form)
    return render(request, "outcomes.html", session, form=form, result=result, query=query)


def _plot(
    request: Request,
    runtime: Runtime,
    session: Session,
    name: str,
    form: dict[str, str],
) -> Response:
    try:
        window = outcomes_view.parse_window(
            form["since"], form["until"], form["window_days"], form["by"]
        )
        png = outcomes_view.reports.plot(runtime, window, name)
    except (outcomes_view.OutcomesFormError, OutcomesError) as exc:
        return problem(request, session, 422, "No plot", str(exc))
    except (OSError, redis.RedisError) as exc:
        return problem(request, session, 503, "No plot", str(exc))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/outcomes/weekly.png")
def weekly_plot(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    since: str | None = None,
    until: str | None = None,
    window_days: str = "30",
    by: str = "variant",
) -> Response:
    return _plot(request, runtime, session, "weekly", _window_form(since, until, window_days, by))


@router.get("/outcomes/channel.png")
def channel_plot(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    since: str | None = None,
    until: str | None = None,
    window_days: str = "30",
    by: str = "variant",
) -> Response:
    return _plot(request, runtime, session, "channel", _window_form(since, until, window_days, by))


# --- models -------------------------------------------------------------------------------


@router.get("/models")
def models_page(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    try:
        views = models_view.models(runtime.settings)
    except Exception as exc:  # MLflow down or its store missing: say so, not a stack trace
        return problem(
            request,
            session,
            503,
            "Registry unavailable",
            f"The model registry could not be read ({type(exc).__name__}).",
        )
    return render(request, "models.html", session, models=views)
