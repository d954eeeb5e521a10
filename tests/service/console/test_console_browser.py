"""The web console in a real browser: Chromium (Debian's ``chromium`` package, driven by
Playwright) against the service served by uvicorn over TCP, with a real Redis and a real
MLflow registry. One browser and one server for the module; each test opens its own
browser context (fresh cookies).

Skips, naming what is missing, when Playwright or the Chromium binary is absent
(``make test`` / ``.ci/run`` install Chromium with apt-get when they can).
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from core.catalogue import Catalogue
from tests.support.auth import AUTH
from tests.support.browser import MISSING, chromium_binary
from tests.support.console import (  # noqa: F401 (fixtures)
    CONSOLE_KEY,
    console_registry,
    console_settings,
    delete_prefix,
    new_prefix,
    plant_outcomes,
)
from tests.support.live_server import running_service
from tests.support.served import publish_customers

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)

CUSTOMER = "C1-CAUTIOUS"


@dataclass(frozen=True)
class Served:
    url: str
    request_id: str


@pytest.fixture(scope="module")
def served_console(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    console_registry: str,
    catalogue: Catalogue,
) -> Iterator[Served]:
    prefix = new_prefix()
    settings = console_settings(
        tmp_path_factory.mktemp("browser") / "home", redis_url, console_registry, prefix
    )
    client = redis.Redis.from_url(redis_url)
    publish_customers(settings, client, catalogue)
    plant_outcomes(client, settings, catalogue)
    try:
        with running_service(settings) as server:
            answer = httpx.post(
                f"{server.url}/v1/recommendations",
                json={"customer_id": CUSTOMER, "channel": "app", "k": 3},
                headers=AUTH,
            )
            assert answer.status_code == 200, answer.text
            yield Served(server.url, answer.json()["request_id"])
    finally:
        delete_prefix(client, prefix)
        client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, served_console: Served) -> Iterator[Any]:
    context = browser.new_context(base_url=served_console.url)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page: Any, key: str = CONSOLE_KEY) -> None:
    page.goto("/console/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")


def test_a_wrong_key_is_refused(page: Any) -> None:
    refused: list[str] = []  # what the browser reports, e.g. a blocked style or image
    page.on("console", lambda message: refused.append(message.text))
    log_in(page, "nbo_not-a-key-anyone-has")
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "450px"  # styled
    assert not [m for m in refused if "Content Security Policy" in m], refused
    assert page.url.endswith("/console/login")
    assert "Login refused: unknown API key" in page.inner_text("[role=alert]")
    page.goto("/console/models")
    assert page.url.endswith("/console/login")  # still no session


def test_log_in_look_a_customer_up_open_a_decision_and_read_its_exclusions(
    page: Any, served_console: Served
) -> None:
    log_in(page)
    assert page.url.endswith("/console/customers")
    page.fill("#customer_id", CUSTOMER)
    page.click("form.inline button[type=submit]")
    assert "/console/customers/" in page.url and CUSTOMER not in page.url
    assert CUSTOMER not in page.content()
    profile = page.inner_text("#profile")
    assert "C1" in profile and "valid: offers up to R1" in profile
    assert "Decisions (1)" in page.inner_text("#timeline")
    page.click(f"a[href='/console/decisions/{served_console.request_id}']")
    assert page.url.endswith(f"/console/decisions/{served_console.request_id}")
    for cell in page.locator("td.suitability").all_inner_texts():
        assert cell.startswith("suitable: R1 <= C1"), cell
    rules = set(page.locator("table.exclusions td.rule").all_inner_texts())
    assert "suitability" in rules  # C1: every product above R1 is excluded, by that rule


def test_see_the_outcomes_plot(page: Any) -> None:
    log_in(page)
    page.click("nav >> text=Outcomes")
    page.fill("input[name=since]", "2026-11-02")
    page.fill("input[name=until]", "2026-11-15")
    page.click("form.inline button[type=submit]")
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    for plot in ("#plot-weekly", "#plot-channel"):  # each PNG loaded and decoded
        page.wait_for_function(
            f"() => {{ const i = document.querySelector('{plot}'); "
            "return i && i.complete && i.naturalWidth > 200; }"
        )

    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"
    assert not [m for m in refused if "Content Security Policy" in m], refused


def test_the_models_page_names_the_champions(page: Any) -> None:
    log_in(page)
    page.click("nav >> text=Models")
    text = page.inner_text("main")
    assert "nbo-recommender" in text and "champion" in text and "version 1" in text


def test_log_out(page: Any) -> None:
    log_in(page)
    page.click("header button[type=submit]")
    assert page.url.endswith("/console/login")
    cookies = {c["name"] for c in page.context.cookies()}
    assert "nbo_console" not in cookies
    page.goto("/console/customers")
    assert page.url.endswith("/console/login")
