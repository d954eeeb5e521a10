"""A served app's fixtures: champions in a real registry, published records, requests.

The recommender's scores rise along the catalogue's file order, so its ranking is the
catalogue read backwards, minus what suitability and eligibility exclude; the churn
probability is ``sigmoid(2 * months_since_login - 3)`` (``tests.support.scorers``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from features.online_store import FeatureSetInfo
from registry.client import Registry
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.records import TODAY, adult, publish_records
from tests.support.scorers import login_churn_model, popularity_recommender

AS_OF = TODAY - timedelta(days=30)


_CHAMPION_STORES: dict[str, Path] = {}
"""Per catalogue version, the store :func:`register_champions` copies (built once per run)."""


def register_champions(root: Path, catalogue: Catalogue) -> str:
    """Tracking URI of a new registry under ``root`` whose champions (version 1) are the
    hand-set models above; shared by the fault and Redis Cluster tests.

    The registry is a copy of one built once per test process: creating MLflow's tables and
    registering two versions take seconds, copying the file milliseconds. Each copy is a
    database of its own; its versions' artifacts stay in the first build's folder, which
    lives until the process ends (as ``tests.support.registry.seeded_store`` does)."""
    template = _CHAMPION_STORES.get(catalogue.version)
    if template is None:
        template = _build_champion_store(catalogue)
        _CHAMPION_STORES[catalogue.version] = template
    root.mkdir(parents=True, exist_ok=True)
    db = root / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


def _build_champion_store(catalogue: Catalogue) -> Path:
    root = Path(tempfile.mkdtemp(prefix="nbo-champions-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    settings = Settings(home=root / "home", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    registry = Registry(settings)
    for scorer, name in (
        (popularity_recommender(catalogue), settings.recommender_model_name),
        (login_churn_model(), settings.churn_model_name),
    ):
        version = registry.log_and_register(scorer, name)
        registry.promote(name, version.version, "champion")
    return root / "mlflow.db"


@pytest.fixture(scope="module")
def champion_registry(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> str:
    """Tracking URI of a registry where both models have a champion (version 1)."""
    return register_champions(tmp_path_factory.mktemp("registry"), catalogue)


def record(**values: Any) -> dict[str, Any]:
    """A feature record of an adult resident C5 customer with money and a fresh assessment."""
    return adult(**{"risk_level": 5, **values})


CUSTOMERS: dict[str, dict[str, Any]] = {
    "C5-RICH": record(),
    "C1-CAUTIOUS": record(risk_level=1),
    # Valid on the feature set's as_of (701 days old), expired today (731 days).
    "C5-EXPIRED-SINCE": record(risk_assessed_on=(TODAY - timedelta(days=731)).isoformat()),
    "C3-LEAVING": record(risk_level=3, months_since_login=3),
}


def ask(
    client: TestClient | httpx.Client, customer_id: str = "C5-RICH", k: int = 3
) -> dict[str, Any]:
    response = client.post(
        "/v1/recommendations", json={"customer_id": customer_id, "channel": "app", "k": k}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


VALID_REQUEST = {"customer_id": "C5-RICH", "channel": "app", "k": 3}


def offered(body: dict[str, Any]) -> list[str]:
    """The product ids of an answer's offers, in rank order."""
    return [offer["product_id"] for offer in body["offers"]]


def publish_customers(
    settings: Settings, client: redis.Redis, catalogue: Catalogue
) -> FeatureSetInfo:
    """Publish ``CUSTOMERS`` as a feature set as of ``AS_OF``."""
    return publish_records(settings, client, catalogue, CUSTOMERS, as_of=AS_OF)


@pytest.fixture
def served(settings: Settings, champion_registry: str) -> Settings:
    """Test settings pointing at the registry with champions."""
    return settings.model_copy(update={"mlflow_tracking_uri": champion_registry})


@pytest.fixture
def live(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[tuple[TestClient, FeatureSetInfo]]:
    """A started app with champions and a published feature set."""
    info = publish_customers(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH) as client:
        yield client, info


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an ``nbo serve`` subprocess serving what ``settings`` name: this
    process's variables without any ``NBO_*`` of its own, then the test's stores, keys and
    prefixes, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBO_")}
    env.update(
        NBO_HOME=str(settings.home),
        NBO_REDIS_URL=settings.redis_url or "",
        NBO_MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri or "",
        NBO_FEATURE_PREFIX=settings.feature_prefix,
        NBO_CONTACT_PREFIX=settings.contact_prefix,
        NBO_EVENTS_PREFIX=settings.events_prefix,
        NBO_AUDIT_PREFIX=settings.audit_prefix,
        NBO_LOG_LEVEL="warning",
        NBO_API_KEYS=json.dumps([key.model_dump() for key in settings.api_keys]),
        NBO_PSEUDONYM_KEY=settings.pseudonym_key.get_secret_value(),
    )
    env.update(extra)
    return env
