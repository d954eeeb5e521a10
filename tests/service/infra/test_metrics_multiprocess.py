"""Metrics with several uvicorn workers: ``nbo serve --workers 2`` aggregates across them.

Runs the real CLI in a subprocess on a free port against the test Redis (no models and no
feature set: every answer is the degraded fallback, which is still a 200).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio
from prometheus_client.mmap_dict import MmapedDict

from cli.serve import prepare_multiprocess_metrics
from core.settings import Settings
from service.decision.contact_policy import ContactLimits, ContactRead
from service.infra.feature_fetch import FeatureLookup, fetch_features
from service.infra.metrics import ServiceMetrics, redis_error_kind
from tests.support.auth import AUTH
from tests.support.paths import REPO_ROOT, free_port
from tests.support.served import service_env

ROUTE = "/v1/recommendations"
START_LIMIT_S = 300


def _env(settings: Settings, metrics_dir: Path) -> dict[str, str]:
    return service_env(settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))


@pytest.fixture
def two_workers(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``nbo serve --workers 2`` on a free port; its URL and metrics directory."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO_ROOT,
        env=_env(settings, metrics_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # A give-up limit, not a performance claim: on a loaded 2-core machine two workers
        # importing the stack and loading models can take minutes.
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"service did not start within {START_LIMIT_S} s"
            time.sleep(0.2)
        # /healthz answers once ONE worker is up; a worker writes its metric files during
        # its startup, so two pids there mean both are serving (on a loaded machine the
        # second can take many seconds more, and would leave every request to the first).
        while len(_worker_pids(metrics_dir)) < 2:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            late = f"the second worker did not start within {START_LIMIT_S} s"
            assert time.monotonic() < deadline, late
            time.sleep(0.2)
        yield url, metrics_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _worker_pids(metrics_dir: Path) -> set[str]:
    """The pids of the workers that wrote a metric file (``<kind>_<pid>.db``)."""
    return {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("*.db")}


def _requests_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Recommendation requests counted in each worker's own file, by pid."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        mmap = MmapedDict(str(path), read_mode=True)
        try:
            for key, value, _ in mmap.read_all_values():
                if '"nbo_http_requests_total"' in key and ROUTE in key:
                    counts[pid] = counts.get(pid, 0.0) + value
        finally:
            mmap.close()
    return counts


def _settled_metrics(url: str, series: str, expected: float) -> str:
    """The metrics page once ``series`` reached ``expected`` (or after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
        if (found and float(found.group(1)) >= expected) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def _metric_total(text: str, name: str, route: str) -> float:
    pattern = re.compile(rf"^{name}\{{([^}}]*)\}} (\S+)$", re.MULTILINE)
    return sum(float(v) for labels, v in pattern.findall(text) if f'route="{route}"' in labels)


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found is not None, series
    return float(found.group(1))


@pytest.mark.integration
def test_two_workers_metrics_add_up(two_workers: tuple[str, Path]) -> None:
    url, metrics_dir = two_workers
    sent = 0

    def burst(count: int) -> int:
        with httpx.Client(base_url=url, timeout=10, headers=AUTH) as client:
            for n in range(count):
                answer = client.post(ROUTE, json={"customer_id": f"C{n}", "channel": "app"})
                assert answer.status_code == 200, answer.text
        return count

    # Concurrent fresh connections until both workers have answered some (bounded): one
    # client after another would all be accepted by the same idle worker; a worker busy
    # with a request leaves the next connection to the other.
    with ThreadPoolExecutor(8) as pool:
        while sent < 1600 and (sent < 40 or len(_requests_per_worker(metrics_dir)) < 2):
            sent += sum(pool.map(burst, [10] * 8))
    # A request is counted once its answer is sent, and its decision once recorded after
    # that (``service.decision.recommend.Answer``): the last ones may land just after the client
    # has its answer.
    deadline = time.monotonic() + 60
    while sum(_requests_per_worker(metrics_dir).values()) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    per_worker = _requests_per_worker(metrics_dir)
    assert len(per_worker) == 2, per_worker
    assert sum(per_worker.values()) == sent
    recorded = 'nbo_request_stage_duration_seconds_count{stage="recording"}'
    text = _settled_metrics(url, recorded, sent)
    assert _metric_total(text, "nbo_http_requests_total", ROUTE) == sent
    assert _metric_total(text, "nbo_http_request_duration_seconds_count", ROUTE) == sent
    assert _value(text, 'nbo_recommendations_degraded_total{reason="no_feature_set"}') == sent
    assert _value(text, recorded) == sent
    assert "nbo_feature_set_age_seconds NaN" in text  # no live feature set, computed at scrape


def test_serve_sets_a_fresh_multiprocess_dir_for_several_workers() -> None:
    env: dict[str, str] = {}
    assert prepare_multiprocess_metrics(1, env) is None and not env
    made = prepare_multiprocess_metrics(2, env)
    assert made is not None and Path(made).is_dir() and not any(Path(made).iterdir())
    assert env["PROMETHEUS_MULTIPROC_DIR"] == made
    assert prepare_multiprocess_metrics(2, {"PROMETHEUS_MULTIPROC_DIR": "/x"}) == "/x"
    Path(made).rmdir()


def test_redis_errors_are_counted_by_kind(settings: Settings) -> None:
    now = datetime.now(UTC)
    contact = ContactRead.for_customer(
        settings.contact_prefix, "P1", now, ContactLimits.from_settings(settings)
    )

    async def read_from_nowhere() -> FeatureLookup:
        dead = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            return await fetch_features(dead, None, None, "C1", contact=contact)  # type: ignore[arg-type]
        finally:
            await dead.aclose()

    lookup = asyncio.run(read_from_nowhere())
    assert isinstance(lookup.redis_error, redis.ConnectionError)
    metrics = ServiceMetrics()
    metrics.observe_redis_error("feature_fetch", redis.TimeoutError())
    metrics.observe_redis_error("feature_fetch", redis.ConnectionError())
    text = metrics.render()[0].decode()
    assert 'nbo_redis_errors_total{kind="timeout",operation="feature_fetch"} 1.0' in text
    assert 'nbo_redis_errors_total{kind="connection",operation="feature_fetch"} 1.0' in text
    assert redis_error_kind(redis.ResponseError()) == "other"
