"""One started service per test module for the event and audit tests (no models: fallback).

Import the fixtures into a test module: ``from tests.support.event_app import app,
module_app, settings``; ``settings`` then names that service's settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from service.app import create_app
from tests.support.auth import AUTH, TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.records import adult, publish_records
from tests.support.registry import empty_store

CUSTOMER = "C-EVENTS"
OTHER_CUSTOMER = "C-EVENTS-OTHER"


@pytest.fixture(scope="module")
def module_app(
    redis_url: str, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Settings]]:
    """One service for the module (starting one is slow): no models, so the fallback."""
    root = tmp_path_factory.mktemp("events")
    prefix = f"nbotest:{uuid.uuid4().hex[:12]}"
    settings = Settings(
        home=root / "home",
        redis_url=redis_url,
        mlflow_tracking_uri=empty_store(root / "mlflow.db"),
        feature_prefix=f"{prefix}:fs",
        contact_prefix=f"{prefix}:contact",
        events_prefix=f"{prefix}:events",
        audit_prefix=f"{prefix}:audit",
        feature_pointer_refresh_seconds=0.0,
        api_keys=TEST_API_KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    client = redis.Redis.from_url(redis_url)
    publish_records(settings, client, catalogue, {CUSTOMER: adult(), OTHER_CUSTOMER: adult()})
    try:
        with TestClient(create_app(settings), headers=AUTH) as app:
            yield app, settings
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def app(module_app: tuple[TestClient, Settings], redis_client: redis.Redis) -> TestClient:
    """The module's service, with events and contact state emptied before each test."""
    client, settings = module_app
    for pattern in (f"{settings.events_prefix}*", f"{settings.contact_prefix}*"):
        keys = list(redis_client.scan_iter(match=pattern))
        if keys:
            redis_client.delete(*keys)
    return client


@pytest.fixture
def settings(module_app: tuple[TestClient, Settings]) -> Settings:
    return module_app[1]
