"""MLflow down: the service starts from its last-known-good models and keeps serving.

Three kinds of outage, each real (no mock): a tracking server nobody listens on (refused),
one that accepts connections and never answers (hung - bounded only by the service's
``mlflow_request_timeout_seconds``), and a store that is missing (an SQLite path where no
store exists: MLflow creates an empty one, which has no models). In each the service
starts within seconds from the cache, answers personal recommendations with the cached
versions, and its model watcher - polling the dead registry in the background - fails,
is counted, and never touches serving.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.lifecycle import CHURN, REC, lifecycle_settings, publish_full
from tests.support.paths import free_port
from tests.support.served import ask

pytestmark = [pytest.mark.faults, pytest.mark.integration]

STARTUP_LIMIT_SECONDS = 30.0  # an empty SQLite store is created and migrated first
HUNG_STARTUP_LIMIT_SECONDS = 10.0  # 2 models x 1 s timeout, no retry, plus the rest


def unlimited(settings: Settings) -> Settings:
    """Rate limits are not what these tests are about (the clients send the test key)."""
    return settings.model_copy(update={"rate_limit": "off"})


@pytest.fixture
def hung_server() -> Iterator[str]:
    """A tracking URI whose server completes the TCP handshake and then never answers.

    Listening without ever calling ``accept``: the kernel queues the connections, the
    requests are sent into the void, and only the client's read timeout ends them.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def outage_uri(kind: str, tmp_path: Path, hung: str) -> str:
    if kind == "refused":
        return f"http://127.0.0.1:{free_port()}"
    if kind == "hung":
        return hung
    return f"sqlite:///{tmp_path / 'lost' / 'mlflow.db'}"  # missing store


@pytest.mark.parametrize("kind", ["refused", "hung", "missing_store"])
def test_registry_outage_serves_the_last_known_good_models(
    kind: str,
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    hung_server: str,
) -> None:
    online = unlimited(lifecycle_settings(settings, tmp_path))
    publish_full(online, redis_client, catalogue)
    with TestClient(create_app(online), headers=AUTH) as client:  # first start: fills the cache
        first = ask(client)

    offline = online.model_copy(
        update={
            "mlflow_tracking_uri": outage_uri(kind, tmp_path, hung_server),
            "mlflow_request_timeout_seconds": 1,
            "mlflow_request_retries": 0,
            "model_poll_seconds": 0.2,
        }
    )
    started = time.monotonic()
    with TestClient(create_app(offline), headers=AUTH) as client:
        startup = time.monotonic() - started
        ready = client.get("/readyz")
        # Requests while the watcher keeps failing against the dead registry.
        answers, latencies = [], []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            sent = time.monotonic()
            answers.append(ask(client))
            latencies.append(time.monotonic() - sent)
        metrics = client.get("/metrics").text

    limit = HUNG_STARTUP_LIMIT_SECONDS if kind == "hung" else STARTUP_LIMIT_SECONDS
    assert startup < limit, f"startup took {startup:.1f} s"
    assert ready.status_code == 200
    assert ready.json()["detail"] == {"recommender": "cache", "churn": "cache"}
    for body in answers:
        assert body["degraded"] is False
        assert body["model_versions"] == first["model_versions"] == {REC: "1", CHURN: "1"}
        assert body["offers"] == first["offers"]
    assert f'nbo_model_source{{model="{REC}",source="cache"}} 1.0' in metrics
    if kind != "missing_store":
        # Polls failed and were counted; serving never waited for them.
        errors = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("nbo_model_reloads_total") and 'outcome="error"' in line
        ]
        # (a hung registry takes the 1 s timeout per model: fewer polls in the window)
        assert errors and sum(errors) >= (1 if kind == "hung" else 2), metrics
    # A request that waited for a poll would take the registry's 1 s timeout (hung); the
    # bound stays under it with room for a shared machine's pauses (GC, CPU starvation).
    assert max(latencies) < 0.9, f"a request waited {max(latencies):.2f} s"
    print(f"\n{kind}: started in {startup:.2f} s, {len(answers)} answers while polling failed")


def test_a_hung_registry_during_a_reload_never_blocks_requests(
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    hung_server: str,
) -> None:
    """The registry hangs *after* startup: reloads fail (counted), the models in memory
    keep answering, at full speed, while a reload is stuck in the watcher's thread."""
    online = unlimited(lifecycle_settings(settings, tmp_path)).model_copy(
        update={"mlflow_request_timeout_seconds": 2, "mlflow_request_retries": 0}
    )
    publish_full(online, redis_client, catalogue)
    with TestClient(create_app(online), headers=AUTH) as client:
        first = ask(client)
        watcher = client.app.state.runtime.watcher  # type: ignore[attr-defined]
        # The registry "goes away": from now on the watcher talks to a hung server.
        watcher.settings = online.model_copy(update={"mlflow_tracking_uri": hung_server})
        stuck = threading.Thread(target=watcher.check, daemon=True)
        stuck.start()
        time.sleep(0.2)
        assert stuck.is_alive(), "the reload should be waiting on the hung registry"
        latencies = []
        while stuck.is_alive():
            sent = time.monotonic()
            body = ask(client)
            latencies.append(time.monotonic() - sent)
            assert body["degraded"] is False and body["model_versions"] == first["model_versions"]
        stuck.join()
        metrics = client.get("/metrics").text
    assert latencies and max(latencies) < 0.5
    assert f'nbo_model_reloads_total{{model="{REC}",outcome="error"}} 1.0' in metrics
