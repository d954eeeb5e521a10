"""Batched metric writes (``service.infra.metric_batch``) expose what plain calls expose.

The batch writes prometheus-client's private histogram internals (``_buckets``, ``_sum``,
``_upper_bounds``): the exposition comparisons below, single-process and multiprocess,
are what fails if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from core.settings import Settings
from core.suitability import Exclusion, Rule
from service.app import create_app
from service.decision.outcome import Decision, DegradedReason
from service.infra import metric_batch
from service.infra.metric_batch import (
    Children,
    DirectWrites,
    HistogramTally,
    MetricBatch,
    MetricWrites,
    add_observations,
)
from service.infra.metrics import STAGES, ServiceMetrics
from tests.support.auth import AUTH
from tests.support.paths import REPO_ROOT

BUCKETS = (0.25, 0.5, 1.0, 2.5)
# Binary fractions: every partial sum is exact, so the batched sum (added once per flush)
# and the plain one (added per call) print the same. On a bound, between bounds, below the
# first, above the last (+Inf), negative.
VALUES = (0.0, 0.25, 0.375, 0.5, 1.0, 2.0, 2.5, 3.0, 100.0, -0.125, 0.25, 1.5)


def feed(writes: MetricWrites, registry: CollectorRegistry) -> None:
    """The same calls for every comparison: labelled and plain counters and histograms,
    a NaN observation (no bucket, NaN sum), two flushes."""
    requests = Counter("t_requests", "", ["route"], registry=registry)
    plain = Counter("t_plain", "", registry=registry)
    seconds = Histogram("t_seconds", "", ["stage"], buckets=BUCKETS, registry=registry)
    unlabelled = Histogram("t_whole_seconds", "", buckets=BUCKETS, registry=registry)
    for round_ in range(2):
        for n, value in enumerate(VALUES):
            writes.inc(requests.labels("a" if n % 3 else "b"))
            writes.inc(plain, n)
            writes.observe(seconds.labels("x" if n % 2 else "y"), value)
            writes.observe(unlabelled, value * (round_ + 1))
        writes.observe(seconds.labels("nan"), float("nan") if round_ else 0.5)
        writes.flush()


def exposition(registry: CollectorRegistry) -> list[str]:
    """The exposition lines, without ``_created`` (a creation timestamp per child)."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_batched_writes_expose_what_plain_calls_do() -> None:
    direct, batched = CollectorRegistry(), CollectorRegistry()
    feed(DirectWrites(), direct)
    feed(MetricBatch(), batched)
    lines = exposition(batched)
    assert lines == exposition(direct)
    assert 't_seconds_bucket{le="0.25",stage="y"} 4.0' in lines  # 0.0, 0.25, -0.125 (twice)
    # NaN: in no bucket (so not in the count, the +Inf bucket), but in the sum.
    assert 't_seconds_count{stage="nan"} 1.0' in lines and 't_seconds_sum{stage="nan"} NaN' in lines


MULTIPROCESS_FEED = """
import sys
from prometheus_client import CollectorRegistry
from service.infra.metric_batch import DirectWrites, MetricBatch
from tests.service.infra.test_metric_batch import feed
feed(MetricBatch() if sys.argv[1] == "batched" else DirectWrites(), CollectorRegistry())
"""


def test_batched_writes_expose_what_plain_calls_do_with_several_workers(tmp_path: Path) -> None:
    """Multiprocess mode (values in mmap files), each way in a process of its own."""
    texts = []
    for way in ("direct", "batched"):
        directory = tmp_path / way
        directory.mkdir()
        subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_FEED, way],
            cwd=REPO_ROOT,
            env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO_ROOT)},
            check=True,
        )
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        # Sorted: the collector's order of families follows its files, not the calls.
        texts.append(sorted(exposition(registry)))
    assert texts[0] == texts[1]
    assert 't_requests_total{route="a"} 16.0' in texts[1]


def test_nothing_is_written_before_a_flush_and_a_flush_writes_each_series_once() -> None:
    registry = CollectorRegistry()
    seconds = Histogram("t_seconds", "", ["stage"], buckets=BUCKETS, registry=registry)
    batch = MetricBatch()
    for _ in range(1000):
        batch.observe(seconds.labels("x"), 0.375)
    assert 't_seconds_count{stage="x"} 0.0' in exposition(registry)
    assert batch.flush() == 1
    assert 't_seconds_count{stage="x"} 1000.0' in exposition(registry)
    assert batch.flush() == 0  # nothing pending: nothing written


class RecordedValue:
    """A histogram child's value that records what is written to it."""

    def __init__(self, writes: list[float]) -> None:
        self.writes = writes

    def inc(self, amount: float) -> None:
        self.writes.append(amount)


def test_a_flush_costs_one_write_per_bucket_hit_and_one_for_the_sum() -> None:
    """O(series touched), not O(observations): 1000 observations in 3 buckets, 4 writes."""
    writes: list[float] = []

    class Child:
        def __init__(self) -> None:
            self._upper_bounds = [*BUCKETS, float("inf")]
            self._buckets = [RecordedValue(writes) for _ in self._upper_bounds]
            self._sum = RecordedValue(writes)

    child = Child()
    batch = MetricBatch()
    for n in range(1000):
        batch.observe(child, (0.125, 2.0, 7.0)[n % 3])
    batch.flush()
    assert writes == [334, 333, 333, 0.125 * 334 + 2.0 * 333 + 7.0 * 333]
    add_observations(child, HistogramTally(child._upper_bounds))  # empty: the sum only
    assert len(writes) == 4 + 1


def test_observations_from_several_threads_during_flushes_are_all_counted() -> None:
    registry = CollectorRegistry()
    requests = Counter("t_requests", "", registry=registry)
    seconds = Histogram("t_seconds", "", buckets=BUCKETS, registry=registry)
    batch = MetricBatch()
    done = threading.Event()

    def observe() -> None:
        for _ in range(5000):
            batch.inc(requests)
            batch.observe(seconds, 0.5)

    def flush_all_along() -> None:
        while not done.is_set():
            batch.flush()

    flusher = threading.Thread(target=flush_all_along)
    flusher.start()
    workers = [threading.Thread(target=observe) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    flusher.join()
    batch.flush()
    lines = exposition(registry)
    assert "t_requests_total 20000.0" in lines
    assert "t_seconds_count 20000.0" in lines and "t_seconds_sum 10000.0" in lines


def _nbo_lines(registry: CollectorRegistry) -> list[str]:
    return [line for line in exposition(registry) if line.startswith("nbo_")]


def test_service_metrics_batched_expose_what_direct_ones_do() -> None:
    """The calls of a recommendation, through ``ServiceMetrics`` both ways."""
    both = ServiceMetrics(batched=False), ServiceMetrics()
    for metrics in both:
        for n in range(3):
            metrics.observe_request("/v1/recommendations", "POST", 200, 0.001 * 2**n)
            metrics.feature_fetch_duration.observe(0.0005)
            metrics.observe_stages({stage: 0.0001 * (n + 1) for stage in STAGES})
    direct, batched = both
    # Pending: the stage series exist at zero, nothing counted yet.
    assert 'nbo_request_stage_duration_seconds_count{stage="recording"} 0.0' in _nbo_lines(
        batched.registry
    )
    rendered = batched.render()[0].decode()  # flushes first
    assert 'nbo_request_stage_duration_seconds_count{stage="recording"} 3.0' in rendered
    assert "nbo_feature_fetch_duration_seconds_count 3.0" in rendered
    assert _nbo_lines(batched.registry) == _nbo_lines(direct.registry)


def test_flush_every_writes_without_a_scrape() -> None:
    metrics = ServiceMetrics()

    async def observe_then_wait() -> list[str]:
        flusher = asyncio.create_task(metrics.flush_every(0.01))
        metrics.observe_request("/v1/recommendations", "POST", 200, 0.002)
        await asyncio.sleep(0.2)
        flusher.cancel()
        return _nbo_lines(metrics.registry)

    lines = asyncio.run(observe_then_wait())
    assert 'nbo_http_request_duration_seconds_count{route="/v1/recommendations"} 1.0' in lines


@pytest.mark.integration
def test_the_lifespan_flushes_what_is_pending_at_shutdown(settings: Settings) -> None:
    """A flush period longer than the test: only the shutdown flush can write the count."""
    app = create_app(settings.model_copy(update={"metrics_flush_seconds": 3600.0}))
    series = 'nbo_http_requests_total{method="POST",route="/v1/recommendations",status="200"} 1.0'
    with TestClient(app) as client:
        answer = client.post(
            "/v1/recommendations", json={"customer_id": "C1", "channel": "app"}, headers=AUTH
        )
        assert answer.status_code == 200, answer.text
        metrics: ServiceMetrics = app.state.runtime.metrics
        assert series not in _nbo_lines(metrics.registry)
    assert series in _nbo_lines(metrics.registry)


@pytest.mark.parametrize("batched", [False, True])
def test_one_call_per_recorded_decision_counts_what_the_three_calls_did(batched: bool) -> None:
    """``observe_recorded`` (the request path's one call once an answer is sent) against
    ``observe_decision`` + ``observe_variant`` + ``observe_stages``, degraded or not."""
    fallback = Decision(
        offers=[],
        churn_risk=None,
        exclusions=[
            Exclusion("funds", Rule.SUITABILITY, "R3 above C2"),
            Exclusion("loans", Rule.SUITABILITY, "R4 above C2"),
            Exclusion("home_account", Rule.WITHDRAWN, "product withdrawn from sale"),
        ],
        degraded_reason=DegradedReason.UNKNOWN_CUSTOMER,
        feature_set=None,
    )
    plain = Decision(offers=[], churn_risk=None, exclusions=[], degraded_reason=None,
                     feature_set=None)  # fmt: skip
    one, three = ServiceMetrics(batched=batched), ServiceMetrics(batched=batched)
    for n, (decision, variant) in enumerate(
        [(fallback, "champion"), (plain, "challenger"), (fallback, "control"), (plain, "champion")]
    ):
        stages = {stage: 0.0001 * (n + 1) for stage in STAGES}
        one.observe_recorded(decision, variant, stages)
        three.observe_decision(decision)
        three.observe_variant(variant, decision)
        three.observe_stages(stages)
    one.flush()
    three.flush()
    lines = _nbo_lines(one.registry)
    assert 'nbo_exclusions_total{rule="suitability"} 4.0' in lines
    assert 'nbo_recommendations_total{degraded="true",variant="control"} 1.0' in lines
    assert lines == _nbo_lines(three.registry)
    with pytest.raises(ValueError):
        one.observe_recorded(plain, "unknown", {})


def test_counted_items_are_counted_at_the_flush_and_folded_in_when_many_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = CollectorRegistry()
    counter = Counter("t_rules", "rules", ["rule"], registry=registry)
    children = Children(counter)
    batch = MetricBatch()
    monkeypatch.setattr(metric_batch, "COUNTED_MAX", 3)
    for items in (["a", "b", "a"], ["b"], ["c", "a"], ["a"]):
        batch.add([], [], (children, str.strip, items))
    assert batch._counted == [(children, str.strip, ["a"])]  # the first 3 were folded in
    assert batch.flush() == 3
    lines = exposition(registry)
    assert 't_rules_total{rule="a"} 4.0' in lines and 't_rules_total{rule="c"} 1.0' in lines
    assert 't_rules_total{rule="b"} 2.0' in lines
