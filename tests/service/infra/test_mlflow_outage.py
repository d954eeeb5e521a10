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
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
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

MLFLOW_DEFAULT_TIMEOUT_SECONDS = 120.0
"""MLflow's own ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (with up to 7 retries): an unbounded start
against a hung registry waits at least this long. A bounded one (1 s, no retry) must take
well under half of it, however loaded the machine - a comparison with the delay the bound
removes, not a guess of how fast the machine is."""


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


@pytest.mark.parametrize(
    "kind",
    [
        "refused",
        # 12 s (the service's registry timeout against a server that never answers):
        # pytest -m slow tests/service/infra/test_mlflow_outage.py
        pytest.param("hung", marks=pytest.mark.slow),
        "missing_store",
    ],
)
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
        # Requests while the watcher keeps failing against the dead registry (every 0.2 s),
        # until it failed often enough to show polling goes on (bounded by pytest-timeout).
        answers = []
        wanted = 1 if kind == "hung" else 2
        while len(answers) < 10 or (kind != "missing_store" and reload_errors(client) < wanted):
            answers.append(ask(client))
        metrics = client.get("/metrics").text

    assert startup < MLFLOW_DEFAULT_TIMEOUT_SECONDS / 2, f"startup took {startup:.1f} s"
    assert ready.status_code == 200
    assert ready.json()["detail"] == {"recommender": "cache", "churn": "cache"}
    for body in answers:
        assert body["degraded"] is False
        assert body["model_versions"] == first["model_versions"] == {REC: "1", CHURN: "1"}
        assert body["offers"] == first["offers"]
    assert f'nbo_model_source{{model="{REC}",source="cache"}} 1.0' in metrics
    if kind == "missing_store":  # an empty store answers: no alias, nothing counted
        assert 'outcome="error"' not in metrics
    # Serving never waiting for a poll: test_a_hung_registry_during_a_reload_never_blocks_requests.
    print(f"\n{kind}: started in {startup:.2f} s, {len(answers)} answers while polling failed")


def reload_errors(client: TestClient) -> float:
    """``nbo_model_reloads_total{outcome="error"}`` summed over models, from /metrics."""
    return sum(
        float(line.split()[-1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("nbo_model_reloads_total") and 'outcome="error"' in line
    )


def test_a_hung_registry_during_a_reload_never_blocks_requests(
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    catalogue: Catalogue,
) -> None:
    """The registry hangs *after* startup: a reload is stuck in the watcher's thread (for
    the whole test: the registry timeout is longer than pytest's), and 50 requests are all
    answered by the models in memory meanwhile - none waited for the reload, since it is
    still stuck after them. Then the registry goes away: the reload fails and is counted."""
    online = unlimited(lifecycle_settings(settings, tmp_path)).model_copy(
        update={"mlflow_request_timeout_seconds": 3600, "mlflow_request_retries": 0}
    )
    publish_full(online, redis_client, catalogue)
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(128)  # completes handshakes, never accepts: requests go unanswered
    try:
        with TestClient(create_app(online), headers=AUTH) as client:
            first = ask(client)
            watcher = client.app.state.runtime.watcher  # type: ignore[attr-defined]
            watcher.settings = online.model_copy(
                update={"mlflow_tracking_uri": f"http://127.0.0.1:{hung.getsockname()[1]}"}
            )
            stuck = threading.Thread(target=watcher.check, daemon=True)
            stuck.start()
            assert wait_until(lambda: pending_connections(hung) > 0), "no request reached it"
            for _ in range(50):
                body = ask(client)
                assert body["degraded"] is False
                assert body["model_versions"] == first["model_versions"]
            assert stuck.is_alive(), "the reload ended: the requests did not overlap it"
            hung.close()  # the registry goes away: pending connections are reset
            stuck.join(120)
            assert not stuck.is_alive()
            metrics = client.get("/metrics").text
    finally:
        hung.close()
    assert f'nbo_model_reloads_total{{model="{REC}",outcome="error"}} 1.0' in metrics


def pending_connections(listener: socket.socket) -> int:
    """Connections waiting in ``listener``'s accept queue (``ss``'s Recv-Q of a listener)."""
    port = listener.getsockname()[1]
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[1]) if out else 0


def wait_until(condition: Callable[[], bool], limit: float = 60.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``limit`` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
