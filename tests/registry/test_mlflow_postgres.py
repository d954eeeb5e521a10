"""Train, register, promote and serve through an MLflow tracking server on PostgreSQL.

The production shape of the registry: ``mlflow server`` with a PostgreSQL backend store and
proxied artifact storage (``--artifacts-destination``), the project talking to it over HTTP
only. PostgreSQL comes from ``NBO_TEST_POSTGRES_URL`` (default: trust auth at
127.0.0.1:5432, database ``test``); each run creates a fresh database and drops it. Skips
with the reason only when the variable is unset and nothing listens on 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import mlflow
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from features.materialize import materialize
from features.online_store import OnlineStore
from features.synthetic import generate_bank
from registry import promotion
from registry.client import Registry
from registry.compare import compare
from registry.holdout import ARTIFACT_FILE
from service.app import create_app
from tests.support.auth import AUTH, TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.paths import free_port
from tests.support.postgres import postgres_url
from training.recommender import train_recommender

# 25 s (an mlflow server migrating a fresh PostgreSQL database, a training, a service):
# pytest -m slow tests/registry/test_mlflow_postgres.py
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_START_SECONDS = 180.0  # first start runs MLflow's schema migrations on PostgreSQL


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards. Skips only when
    ``NBO_TEST_POSTGRES_URL`` is unset and nothing listens on the default port; a server that
    is named or listens but cannot be used fails (``tests.support.postgres``)."""
    url = postgres_url(dict(os.environ))
    import psycopg2  # a dev dependency: missing, the test fails rather than skips

    admin = psycopg2.connect(url, connect_timeout=10)
    admin.autocommit = True
    name = f"nbo_mlflow_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; name the driver we ship.
        server = url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
        yield f"{server}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def mlflow_server(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``mlflow server`` on a free loopback port; yields its URL, stops it afterwards."""
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", postgres_database,
        "--artifacts-destination", str(workdir / "artifacts"),
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_health(url, server, log_path)
            yield url
        finally:
            # The server forks workers: signal its whole session (it was started in a new
            # one), so nothing outlives the test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, 15)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait(10)


def _wait_for_health(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy in {SERVER_START_SECONDS:.0f} s")


def test_train_register_promote_and_serve_through_postgres_backed_mlflow(
    mlflow_server: str,
    redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    catalogue: Catalogue,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        redis_url=redis_url,
        mlflow_tracking_uri=mlflow_server,
        feature_prefix=f"{key_prefix}:fs",
        feature_pointer_refresh_seconds=0.0,
        api_keys=TEST_API_KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    end_month = date.today().replace(day=1) - timedelta(days=1)
    tables = generate_bank(1500, 8, 7, catalogue, end_month)

    result = train_recommender(tables, catalogue, settings)
    registry = Registry(settings)
    registry.promote(settings.recommender_model_name, result.version, "champion")
    listed = registry.list_versions(settings.recommender_model_name)
    assert [v.version for v in listed if "champion" in v.aliases] == [result.version]
    # The artifact went through the server's proxy, not to a local ./mlruns.
    assert listed[0].source is not None and not listed[0].source.startswith(("/", "file:"))

    store = OnlineStore.for_settings(redis_client, settings)
    as_of = tables.holdings["month"].max().date()
    info = materialize(tables, as_of, catalogue, store)
    customer = next(
        str(c) for c in tables.customers["customer_id"] if store.read(info.version, str(c))
    )

    with TestClient(create_app(settings), headers=AUTH) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        answer = client.post(
            "/v1/recommendations", json={"customer_id": customer, "channel": "app", "k": 3}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["degraded"] is False
    assert body["model_versions"][settings.recommender_model_name] == str(result.version)
    assert body["feature_set"]["version"] == info.version
    assert body["offers"]

    # The gate's per-row holdout values and every kind of history entry go through the
    # server too: the paired bootstrap reads the values back, a missing artifact reads as
    # absent; a refusal, a promotion and an unset alias are recorded.
    name = settings.recommender_model_name
    assert registry.run_artifact(result.run_id, ARTIFACT_FILE) is not None
    assert registry.run_artifact(result.run_id, "no-such-file.npz") is None
    gate = compare(registry, name, result.version, result.version).gate
    assert gate is not None and gate.method == "paired bootstrap" and gate.diff == 0.0
    registry.record_refusal(name, result.version, "challenger", gate="planted", reason="check")
    promotion.promote(registry, name, result.version, "challenger", reason="a/b")
    registry.unset_alias(name, "challenger", reason="done")
    history = Registry(settings).history(name)
    assert [(e.alias, e.action, e.outcome) for e in history] == [
        ("champion", "promote", "moved"),
        ("challenger", "promote", "refused"),
        ("challenger", "promote", "moved"),
        ("challenger", "unset", "moved"),
    ]
    assert history[1].gate == "planted" and history[3].reason == "done"

    # What a data scientist sees, through the server too: the version's signature and
    # input example, its logged model linked to it, the run's lineage and grouped metrics.
    version = registry.version(name, result.registered_version)
    assert version.source is not None
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            version.source, dst_path=str(tmp_path / "model"), tracking_uri=settings.tracking_uri
        )
    )
    model = mlflow.models.Model.load(str(model_dir / "MLmodel"))
    assert model.signature is not None and model.saved_input_example_info is not None
    assert (model_dir / "code" / "core" / "scoring").is_dir()
    run = registry.client.get_run(result.run_id)
    assert {"quality/map_at_7", "time/train_seconds"} <= set(run.data.metrics)
    assert run.inputs is not None
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {
        "recommender-training",
        "recommender-holdout",
    }
    (logged,) = registry.client.search_logged_models([run.info.experiment_id])
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": name, "version": result.registered_version}
    ]
