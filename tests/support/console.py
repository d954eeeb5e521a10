"""The web console's test helpers: a served app's settings with a key that may not open
the console, logging in through the form, and reading a page's CSRF token."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core.api_keys import ApiKeyEntry, hash_key
from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from core.settings import Settings
from core.tables import write_tables
from tests.support.auth import TEST_API_KEY, TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.outcomes_data import plant, planted_tables
from tests.support.served import register_champions

NO_AUDIT_KEY = "nbo_test-key-without-the-audit-scope"
KEYS = [
    *TEST_API_KEYS,
    ApiKeyEntry(name="app-only", sha256=hash_key(NO_AUDIT_KEY), scopes=("recommend", "events")),
]
CONSOLE_KEY = TEST_API_KEY
"""Holds every scope, ``audit`` included."""

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(home: Path, redis_url: str, tracking_uri: str, prefix: str) -> Settings:
    """Settings of a served app for console tests: own Redis prefixes, the two keys above."""
    return Settings(
        home=home,
        redis_url=redis_url,
        mlflow_tracking_uri=tracking_uri,
        feature_prefix=f"{prefix}:fs",
        contact_prefix=f"{prefix}:contact",
        events_prefix=f"{prefix}:events",
        audit_prefix=f"{prefix}:audit",
        console_prefix=f"{prefix}:console",
        feature_pointer_refresh_seconds=0.0,
        audit_flush_ms=5.0,
        api_keys=KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )


def new_prefix() -> str:
    return f"nbotest:{uuid.uuid4().hex[:12]}"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def csrf_token(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = _TOKEN.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client: httpx.Client, key: str = CONSOLE_KEY) -> httpx.Response:
    """Fetch the login form, post ``key`` with its token; the answer (not followed)."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/console/login",
        data={"api_key": key, "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )


def iter_console_routes(app_routes: list[object]) -> Iterator[tuple[str, str]]:
    """(method, path) of every console route of an app, path parameters filled in."""
    for route in app_routes:
        path = getattr(route, "path", "")
        if not isinstance(path, str) or not path.startswith("/console"):
            continue
        filled = (
            path.replace("{pseudonym}", "0" * 64)
            .replace("{request_id}", "0" * 32)
            .replace("{name}", "console.css")
        )
        for method in sorted(getattr(route, "methods", set()) or set()):
            if method != "HEAD":
                yield method, filled


@pytest.fixture(scope="session")
def console_registry(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> str:
    """Tracking URI of a registry with champions (``tests.support.served``), shared by the
    console's test modules: registering the models is most of their set-up time."""
    return register_champions(tmp_path_factory.mktemp("console-registry"), catalogue)


def plant_outcomes(client: redis.Redis, settings: Settings, catalogue: Catalogue) -> None:
    """The outcomes report's planted period (``tests.support.outcomes_data``: decisions of
    2026-11-02 .. 2026-11-15) and its holdings as the canonical tables of ``settings``."""
    plant(client, settings, pseudonymiser(settings))
    write_tables(planted_tables(catalogue), settings.data_dir, [p.id for p in catalogue.holdable])
