"""The console's views: customers, decisions, outcomes, models. Thin routes: each one
checks its input, asks a view module, renders.

Every route needs a live session (``service.console.web.SessionDep``; without one the
browser is sent to the login page), and the look-up form checks its CSRF token. Bad
input is a page that says what is wrong (404, 422), never a stack trace. The raw
customer id entered in the look-up form is hashed at once and goes nowhere else: not into
a URL, a page, a log line or a metric label.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.pseudonym import PSEUDONYM_PATTERN, pseudonymiser
from features.audit_export import read_decision
from features.outcomes import OutcomesError
from service.console import customer_view, decision_view, models_view, outcomes_view, timeline
from service.console.session import Session, same_token
from service.console.urls import CONSOLE_URL
from service.console.web import SessionDep, TokenField, problem, refuse_csrf, render
from service.runtime import Runtime, RuntimeDep

CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PSEUDONYM = re.compile(PSEUDONYM_PATTERN)
REQUEST_ID = re.compile(decision_view.REQUEST_ID_PATTERN)

router = APIRouter(prefix=CONSOLE_URL, include_in_schema=False)


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
            runtime, pseudonym, profile.tier if profile else None, now
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
    headers = {"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"}
    return Response(png, media_type="image/png", headers=headers)


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
