"""The web console through a real app (TestClient) on a real Redis and MLflow registry:
sessions and their cookies, CSRF, bad input, what each page shows, and that the raw
customer id appears in no page, log line or metric.

One app for the module (starting one costs seconds); each test starts logged out.
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from core.settings import Settings
from service.app import create_app
from service.console import login, pages
from tests.support.auth import AUTH
from tests.support.console import (  # noqa: F401 (fixtures)
    NO_AUDIT_KEY,
    console_registry,
    console_settings,
    csrf_token,
    delete_prefix,
    iter_console_routes,
    log_in,
    new_prefix,
    plant_outcomes,
)
from tests.support.served import CUSTOMERS, publish_customers

CUSTOMER = "C5-RICH"
CAUTIOUS = "C1-CAUTIOUS"


@dataclass(frozen=True)
class Console:
    client: TestClient
    settings: Settings
    request_ids: list[str]
    """Decisions of ``CUSTOMER``, oldest first."""
    cautious_request_id: str


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    console_registry: str,
    catalogue: Catalogue,
) -> Iterator[Console]:
    prefix = new_prefix()
    settings = console_settings(
        tmp_path_factory.mktemp("console") / "home", redis_url, console_registry, prefix
    )
    client_redis = redis.Redis.from_url(redis_url)
    publish_customers(settings, client_redis, catalogue)
    plant_outcomes(client_redis, settings, catalogue)
    try:
        with TestClient(create_app(settings)) as client:
            ids = []
            for _ in range(23):  # more than one page of the timeline
                answer = client.post(
                    "/v1/recommendations",
                    json={"customer_id": CUSTOMER, "channel": "app", "k": 3},
                    headers=AUTH,
                )
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["request_id"])
            cautious = client.post(
                "/v1/recommendations",
                json={"customer_id": CAUTIOUS, "channel": "app", "k": 3},
                headers=AUTH,
            ).json()
            first = client.post(
                "/v1/recommendations",
                json={"customer_id": CUSTOMER, "channel": "app", "k": 3},
                headers=AUTH,
            ).json()
            ids.append(first["request_id"])
            event = {
                "event_id": "console-test-event-1",
                "type": "accepted",
                "customer_id": CUSTOMER,
                "product_id": first["offers"][0]["product_id"],
                "request_id": first["request_id"],
                "channel": "app",
                "timestamp": datetime.now(UTC).isoformat(),
            }
            stored = client.post("/v1/events", json=event, headers=AUTH)
            assert stored.status_code == 202, stored.text
            yield Console(client, settings, ids, cautious["request_id"])
    finally:
        delete_prefix(client_redis, prefix)
        client_redis.close()


@pytest.fixture
def app(console: Console) -> Iterator[Console]:
    """The module's console, logged out (no cookie) at the start of the test."""
    console.client.cookies.clear()
    yield console
    console.client.cookies.clear()


def logged_in(console: Console) -> str:
    """Log in; the CSRF token of the session's forms."""
    answer = log_in(console.client)
    assert answer.status_code == 303, answer.text
    return csrf_token(console.client.get("/console/customers").text)


def pseudonym_of(console: Console, customer_id: str) -> str:
    return pseudonymiser(console.settings)(customer_id)


# --- no session, no page ------------------------------------------------------------------


def test_every_console_page_and_asset_without_a_session_redirects_to_the_login(
    app: Console,
) -> None:
    routes = list(
        iter_console_routes([*login.public.routes, *login.router.routes, *pages.router.routes])
    )
    assert ("GET", "/console/static/console.css") in routes
    assert len(routes) >= 9
    for method, path in routes:
        answer = app.client.request(method, path, follow_redirects=False)
        if path == "/console/login":
            assert answer.status_code in (200, 403), (method, path)  # the form, or no token
            continue
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"] == "/console/login", (method, path)


def test_a_forged_or_unknown_session_cookie_is_no_session(app: Console) -> None:
    app.client.cookies.set("nbo_console", "x" * 43, path="/console")
    answer = app.client.get("/console/customers", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


def test_the_console_needs_no_api_key_header_but_the_api_still_does(app: Console) -> None:
    assert app.client.get("/console/login").status_code == 200
    assert app.client.get(f"/v1/decisions/{app.request_ids[0]}").status_code == 401


# --- the session cookie -------------------------------------------------------------------


def _session_cookie(answer_headers: list[str]) -> str:
    cookie = next(h for h in answer_headers if h.startswith("nbo_console="))
    return cookie.lower()


def test_the_session_cookie_is_http_only(app: Console) -> None:
    answer = log_in(app.client)
    assert answer.status_code == 303
    assert "httponly" in _session_cookie(answer.headers.get_list("set-cookie"))


def test_the_session_cookie_is_same_site_strict(app: Console) -> None:
    answer = log_in(app.client)
    assert "samesite=strict" in _session_cookie(answer.headers.get_list("set-cookie"))


def test_the_session_cookie_is_secure_over_tls(app: Console) -> None:
    form = app.client.get("https://testserver/console/login")
    assert "secure" in form.headers["set-cookie"].lower()
    answer = app.client.post(
        "https://testserver/console/login",
        data={"api_key": NO_AUDIT_KEY.replace("without", "x"), "csrf_token": "x"},
        cookies={"nbo_console_login": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 403  # token mismatch: the form's token was not sent
    answer = app.client.post(
        "https://testserver/console/login",
        data={"api_key": "nbo_test-key-with-every-scope", "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = _session_cookie(answer.headers.get_list("set-cookie"))
    assert "; secure" in cookie


def test_the_session_cookie_is_not_marked_secure_over_plain_http(app: Console) -> None:
    answer = log_in(app.client)
    assert "; secure" not in _session_cookie(answer.headers.get_list("set-cookie"))


def test_no_key_in_a_url_and_none_echoed(app: Console) -> None:
    answer = log_in(app.client)
    assert "nbo_test-key" not in answer.headers["location"]
    page = app.client.get("/console/customers")
    assert "nbo_test-key" not in page.text


# --- login, logout, CSRF ------------------------------------------------------------------


def test_a_wrong_key_is_refused_with_401_and_no_session(app: Console) -> None:
    answer = log_in(app.client, "nbo_not-a-configured-key")
    assert answer.status_code == 401
    assert "unknown API key" in answer.text
    assert "nbo_console=" not in ";".join(answer.headers.get_list("set-cookie"))
    assert app.client.get("/console/customers", follow_redirects=False).status_code == 303


def test_a_key_without_the_audit_scope_is_refused_naming_the_scope(app: Console) -> None:
    answer = log_in(app.client, NO_AUDIT_KEY)
    assert answer.status_code == 401
    assert "app-only&#39; lacks the &#39;audit&#39; scope" in answer.text


def test_login_without_its_csrf_token_is_refused(app: Console) -> None:
    app.client.get("/console/login")
    answer = app.client.post(
        "/console/login",
        data={"api_key": "nbo_test-key-with-every-scope"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "nbo_console=" not in ";".join(answer.headers.get_list("set-cookie"))


def test_a_lookup_without_its_csrf_token_is_refused(app: Console) -> None:
    logged_in(app)
    answer = app.client.post(
        "/console/customers", data={"customer_id": CUSTOMER}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "security token" in answer.text
    wrong = app.client.post(
        "/console/customers",
        data={"customer_id": CUSTOMER, "csrf_token": "y" * 43},
        follow_redirects=False,
    )
    assert wrong.status_code == 403


def test_logout_without_its_csrf_token_is_refused_and_the_session_lives_on(app: Console) -> None:
    logged_in(app)
    answer = app.client.post("/console/logout", follow_redirects=False)
    assert answer.status_code == 403
    assert app.client.get("/console/customers").status_code == 200


def test_logout_ends_the_session_in_redis_not_only_in_the_browser(app: Console) -> None:
    token = logged_in(app)
    cookie = app.client.cookies.get("nbo_console")
    assert cookie
    answer = app.client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    app.client.cookies.set("nbo_console", cookie, path="/console")  # replay the old cookie
    assert app.client.get("/console/customers", follow_redirects=False).status_code == 303


# --- bad input ----------------------------------------------------------------------------


def _no_stack_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


def test_an_unknown_customer_is_a_404_page(app: Console) -> None:
    token = logged_in(app)
    answer = app.client.post(
        "/console/customers", data={"customer_id": "NOBODY-KNOWN", "csrf_token": token}
    )
    assert answer.status_code == 404
    assert "Unknown customer" in answer.text
    _no_stack_trace(answer.text)


def test_a_malformed_customer_id_is_a_422_page_that_does_not_echo_it(app: Console) -> None:
    token = logged_in(app)
    answer = app.client.post(
        "/console/customers", data={"customer_id": "bad id <x>", "csrf_token": token}
    )
    assert answer.status_code == 422
    assert "customer_id:" in answer.text
    assert "bad id" not in answer.text
    _no_stack_trace(answer.text)


def test_a_malformed_pseudonym_is_a_422_page(app: Console) -> None:
    logged_in(app)
    answer = app.client.get("/console/customers/not-a-pseudonym")
    assert answer.status_code == 422
    assert "Malformed customer address" in answer.text
    _no_stack_trace(answer.text)


def test_an_unknown_request_id_is_a_404_page(app: Console) -> None:
    logged_in(app)
    answer = app.client.get("/console/decisions/" + "ab" * 16)
    assert answer.status_code == 404
    assert "Unknown decision" in answer.text
    _no_stack_trace(answer.text)


def test_a_malformed_request_id_is_a_422_page(app: Console) -> None:
    logged_in(app)
    for bad in ("123", "Z" * 32, "ab" * 17):
        answer = app.client.get(f"/console/decisions/{bad}")
        assert answer.status_code == 422, bad
        assert "Malformed request id" in answer.text
        _no_stack_trace(answer.text)


def test_a_bad_outcomes_window_is_a_422_page_naming_the_field(app: Console) -> None:
    logged_in(app)
    answer = app.client.get("/console/outcomes", params={"since": "2026-13-01", "until": "x"})
    assert answer.status_code == 422
    assert "since:" in answer.text
    answer = app.client.get(
        "/console/outcomes", params={"since": "2026-11-02", "until": "2026-11-01"}
    )
    assert answer.status_code == 422
    assert "until: is before since" in answer.text


# --- what the pages show ------------------------------------------------------------------


def test_the_lookup_leads_to_the_customer_page_addressed_by_pseudonym(app: Console) -> None:
    token = logged_in(app)
    answer = app.client.post(
        "/console/customers",
        data={"customer_id": CUSTOMER, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/customers/{pseudonym_of(app, CUSTOMER)}"


def test_the_customer_page_shows_profile_contact_and_the_newest_decisions(app: Console) -> None:
    logged_in(app)
    page = app.client.get(f"/console/customers/{pseudonym_of(app, CUSTOMER)}")
    assert page.status_code == 200
    text = page.text
    record = CUSTOMERS[CUSTOMER]
    assert f"C{record['risk_level']}" in text
    assert "valid: offers up to R5" in text
    assert "Decisions (24)" in text
    assert f"/console/decisions/{app.request_ids[-1]}" in text  # newest first
    assert f"/console/decisions/{app.request_ids[0]}" not in text  # on a later page
    assert "suitable: R" in text
    assert "accepted" in text  # the event that followed the newest decision
    assert "page 1 of 2" in text


def test_the_customer_timeline_pages_back_to_the_oldest_decision(app: Console) -> None:
    logged_in(app)
    page = app.client.get(f"/console/customers/{pseudonym_of(app, CUSTOMER)}", params={"page": "2"})
    assert page.status_code == 200
    assert f"/console/decisions/{app.request_ids[0]}" in page.text
    assert "page 2 of 2" in page.text


def test_the_decision_page_spells_out_suitability_and_lists_exclusions(app: Console) -> None:
    logged_in(app)
    page = app.client.get(f"/console/decisions/{app.cautious_request_id}")
    assert page.status_code == 200
    text = page.text
    assert "suitable: R1 &lt;= C1" in text
    assert "C1: risk assessment C1 of" in text
    assert '<td class="rule">suitability</td>' in text
    assert "nbo-recommender v1" in text


def test_the_decision_page_shows_the_events_that_followed(app: Console) -> None:
    logged_in(app)
    page = app.client.get(f"/console/decisions/{app.request_ids[-1]}")
    assert page.status_code == 200
    assert "<strong>accepted</strong>" in page.text


def test_the_models_page_shows_champions_and_their_history(app: Console) -> None:
    logged_in(app)
    page = app.client.get("/console/models")
    assert page.status_code == 200
    text = page.text
    assert "nbo-recommender" in text and "nbo-churn" in text
    assert "version 1" in text
    assert "/#/experiments/" in text and "/runs/" in text
    assert "Promotion history" in text


def test_the_outcomes_page_reports_a_window_with_its_plots(app: Console) -> None:
    logged_in(app)
    page = app.client.get(
        "/console/outcomes", params={"since": "2026-11-02", "until": "2026-11-15"}
    )
    assert page.status_code == 200, page.text
    text = page.text
    assert "<td>champion</td><td>4</td><td>3</td><td>5</td><td>2</td>" in text  # EXPECTED
    assert "Uplift against control" in text
    query = "since=2026-11-02&amp;until=2026-11-15&amp;window_days=30&amp;by=variant"
    for name in ("weekly", "channel"):
        assert f'src="/console/outcomes/{name}.png?{query}"' in text
        plot = app.client.get(
            f"/console/outcomes/{name}.png",
            params={"since": "2026-11-02", "until": "2026-11-15"},
        )
        assert plot.status_code == 200
        assert plot.headers["content-type"] == "image/png"
        assert plot.content.startswith(b"\x89PNG")


def test_an_empty_outcomes_window_says_so(app: Console) -> None:
    logged_in(app)
    page = app.client.get(
        "/console/outcomes", params={"since": "2020-01-01", "until": "2020-01-31"}
    )
    assert page.status_code == 422
    assert "no recorded decision from 2020-01-01 to 2020-01-31" in page.text


def test_pages_carry_a_same_origin_content_security_policy(app: Console) -> None:
    logged_in(app)
    page = app.client.get("/console/customers")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert 'href="/console/static/console.css"' in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_login_page_s_inline_style_is_the_one_its_policy_allows(app: Console) -> None:
    page = app.client.get("/console/login")
    style = page.text.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["content-security-policy"]
    assert "/console/static/" not in page.text  # the style sheet needs a session


def test_no_raw_customer_id_in_any_page_log_line_or_metric(
    app: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = logged_in(app)
    bodies = []
    lookup = app.client.post(
        "/console/customers", data={"customer_id": CUSTOMER, "csrf_token": token}
    )
    bodies.append(lookup.text)
    bodies.append(str(lookup.url))
    bodies.append(app.client.get(f"/console/decisions/{app.request_ids[-1]}").text)
    bodies.append(app.client.get("/console/models").text)
    bodies.append(app.client.get("/metrics").text)
    bodies.extend(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert lookup.status_code == 200
    for text in bodies:
        assert CUSTOMER not in text


def test_templates_are_escaped() -> None:
    """Jinja autoescape is on for the console's templates (an offer reason holding markup
    must not become markup)."""
    from service.console.web import templates

    rendered = templates.env.from_string("{{ x }}").render(x="<b>")
    assert rendered == "&lt;b&gt;"
    assert Path(templates.env.loader.searchpath[0]).name == "templates"  # type: ignore[union-attr]
