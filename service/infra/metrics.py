"""Prometheus metrics of one service instance.

Each app gets its own ``CollectorRegistry`` (not the process-global default) so that apps
built side by side - tests, or a second app in one process - never collide or share counts.

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``nbo serve --workers N``
sets a fresh one), prometheus-client writes every value to per-process files there and
``/metrics`` - whichever worker answers it - reads and aggregates all of them: counters and
histograms are summed, gauges take the maximum over live workers. The feature-set age is
computed by the answering worker at scrape time (every worker re-reads the pointer within
seconds). Process metrics (CPU, memory) are per process and are left out in that mode.

Label values are bounded sets (route templates, rule and reason enums, model names and
versions): never a customer id or a raw path.

The per-request observations (HTTP requests, the feature fetch, the stages, exclusions,
degraded answers, variants) are added up in the process (``service.infra.metric_batch``)
and written to prometheus-client by :meth:`ServiceMetrics.flush`: every
``NBO_METRICS_FLUSH_SECONDS`` (the app's lifespan runs :meth:`ServiceMetrics.flush_every`),
before this process renders ``/metrics`` and at shutdown. So a worker's own values are
current in the page it renders, and another worker's reach it within that period. The
rarer counts and the gauges are written at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from operator import itemgetter

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.suitability import Rule
from features.online_store import FeatureSetInfo
from registry.client import LoadedModel
from service.decision.outcome import Decision, DegradedReason
from service.infra.breaker import BreakerOpenError
from service.infra.metric_batch import (
    ChildObserver,
    Children,
    DirectWrites,
    MetricBatch,
    MetricWrites,
)
from service.infra.state import ServingState

log = logging.getLogger(__name__)

_RULE = itemgetter(1)  # core.suitability.Exclusion -> its rule (a StrEnum: its own label)

STAGES = ("feature_fetch", "scoring", "filtering", "arbitration", "recording")
"""The stages of the request path, in order; the metric's ``stage`` label values."""


class StageClock:
    """Laps of a stopwatch, added up per stage.

    ``lap(stage)`` charges the time since the previous lap (or since the clock started) to
    ``stage``; a stage lapped twice (the offers' model reasons count as ``scoring``, and a
    shadow decision runs every stage again) adds up.
    """

    __slots__ = ("_last", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def resume(self) -> None:
        """Start the next lap now: the time since the last lap is charged to no stage."""
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - self._last)
        self._last = now


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""From 1 ms (a fast answer) to the 1 s that counts as broken."""

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Stages are fractions of a request: from 100 us up."""

UNMATCHED_ROUTE = "<unmatched>"
"""Route label of a request no route matched (a 404): one label, whatever the path."""

VARIANT_OF_SLOT = {
    "recommender": "champion",
    "churn": "champion",
    "challenger": "challenger",
    "maturity": "champion",
    "response": "champion",
}
"""Which variant each serving slot's model is (``service.infra.state.MODEL_SLOTS``)."""


RECOMMENDATION_VARIANTS = ("champion", "challenger", "control")
"""``nbo_recommendations_total{variant}``: who answered (``service.decision.variant.Variant``;
control = held out of proactive offers); any other raises in ``observe_variant``."""


BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""``nbo_redis_breaker_state`` values: higher is worse, so the worst worker shows."""

MODEL_RELOAD_OUTCOMES = ("swapped", "refused", "removed", "error")
"""``nbo_model_reloads_total{outcome}``: every value the model watcher counts (its
"unchanged" is not counted); any other raises in :meth:`ServiceMetrics.observe_reload`."""

AUDIT_OUTCOMES = ("written", "dropped", "failed")
"""``nbo_audit_records_total{outcome}``; any other raises in ``observe_audit``."""

REDIS_ERROR_KINDS = ("timeout", "connection", "breaker_open", "other")
"""``nbo_redis_errors_total{kind}``: what :func:`redis_error_kind` returns."""

LABEL_DOMAINS: dict[str, dict[str, tuple[str, ...]]] = {
    "nbo_model_reloads_total": {"outcome": MODEL_RELOAD_OUTCOMES},
    "nbo_audit_records_total": {"outcome": AUDIT_OUTCOMES},
    "nbo_redis_errors_total": {"kind": REDIS_ERROR_KINDS},
    "nbo_redis_breaker_state": {"breaker": ("redis",)},
    "nbo_recommendations_degraded_total": {"reason": tuple(r.value for r in DegradedReason)},
    "nbo_exclusions_total": {"rule": tuple(r.value for r in Rule)},
    "nbo_recommendations_total": {"variant": RECOMMENDATION_VARIANTS},
}
"""The closed label sets: every value the service can emit for these labels, and no other
(the counting methods refuse others). Alerts match only these values
(tests/deploy/test_deploy_config.py derives the check from this table)."""


def multiprocess_dir() -> str | None:
    """The multiprocess directory in effect for this process, or None (single process)."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def redis_error_kind(exc: BaseException) -> str:
    """``timeout``, ``connection``, ``breaker_open`` (refused without a call) or ``other``."""
    if isinstance(exc, BreakerOpenError):
        return "breaker_open"
    if isinstance(exc, redis.TimeoutError):
        return "timeout"
    if isinstance(exc, redis.ConnectionError):
        return "connection"
    return "other"


def _check_domain(metric: str, label: str, value: str) -> None:
    """Refuse a label value outside ``LABEL_DOMAINS``: an alert could not know of it."""
    if value not in LABEL_DOMAINS[metric][label]:
        raise ValueError(
            f"{metric}: {label}={value!r} is not one of {LABEL_DOMAINS[metric][label]}"
        )


class FeatureSetAge(Collector):
    """``nbo_feature_set_age_seconds``, computed at scrape time (NaN when none is live).

    A collector rather than a gauge with ``set_function``: it works the same in
    multiprocess mode, where only file-backed values would be aggregated.
    """

    def __init__(self) -> None:
        self.current: Callable[[], FeatureSetInfo | None] = lambda: None

    def collect(self) -> Iterable[Metric]:
        info = self.current()
        age = math.nan if info is None else (datetime.now(UTC) - info.created_at).total_seconds()
        family = GaugeMetricFamily(
            "nbo_feature_set_age_seconds",
            "Seconds since the live feature set was materialized (NaN when none is live).",
        )
        family.add_metric([], age)
        yield family


class ServiceMetrics:
    """The service's metrics, registered in their own registry.

    ``batched`` (the service's way): the per-request observations wait in the process for
    :meth:`flush`; False writes each one at once (the reference the tests and
    loadtests/bench_metrics.py compare with).
    """

    def __init__(self, batched: bool = True) -> None:
        self.multiprocess_dir = multiprocess_dir()
        self.writes: MetricWrites = MetricBatch() if batched else DirectWrites()
        self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            # Several workers: the highest value among the live ones.
            return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode="livemax")

        self.http_requests = counter(
            "nbo_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
        )
        self.http_duration = Histogram(
            "nbo_http_request_duration_seconds",
            "HTTP request duration by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feature_fetch_histogram = Histogram(
            "nbo_feature_fetch_duration_seconds",
            "Duration of the one Redis round trip that fetches a customer's features.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # What the request path's fetch observes (``observe(seconds)``), through the batch.
        self.feature_fetch_duration = ChildObserver(self.feature_fetch_histogram, self.writes)
        self.feature_reads = counter(
            "nbo_feature_reads",
            "The request path's feature reads (one EVAL per recommendation).",
            [],
        )
        self.feature_read_round_trips = counter(
            "nbo_feature_read_round_trips",
            "Round trips that carried the feature reads: reads made while others were in "
            "flight share one pipeline, so reads / round trips is the mean batch.",
            [],
        )
        self.degraded = counter(
            "nbo_recommendations_degraded",
            "Recommendations answered by the fallback, by reason.",
            ["reason"],
        )
        self.exclusions = counter(
            "nbo_exclusions",
            "Products filtered out of recommendations, by suitability or eligibility rule.",
            ["rule"],
        )
        self.model_info = gauge(
            "nbo_model_info",
            "1 for each model version the service is serving with.",
            ["model", "version"],
        )
        self.model_variant_info = gauge(
            "nbo_model_variant_info",
            "1 for each model version serving, by variant (champion / challenger).",
            ["variant", "model", "version"],
        )
        self.model_reloads = counter(
            "nbo_model_reloads",
            "Model alias checks that changed something or failed, by model and outcome "
            "(swapped, refused, removed, error).",
            ["model", "outcome"],
        )
        self.model_source = gauge(
            "nbo_model_source",
            "1 where a loaded model came from: the registry or the last-known-good cache.",
            ["model", "source"],
        )
        self.recommendations = counter(
            "nbo_recommendations",
            "Recommendations by variant (champion / challenger / control) and whether degraded.",
            ["variant", "degraded"],
        )
        self.stage_duration = Histogram(
            "nbo_request_stage_duration_seconds",
            "Time of each stage of a recommendation: feature_fetch, scoring (model scores, "
            "churn risk, P(accept), reasons), filtering, arbitration (and the response), "
            "recording.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.redis_errors = counter(
            "nbo_redis_errors",
            "Failed Redis calls by operation and kind (timeout, connection, other).",
            ["operation", "kind"],
        )
        self.events_ingested = counter(
            "nbo_events_ingested",
            "Feedback events accepted by POST /v1/events, by type and status (stored, duplicate).",
            ["type", "status"],
        )
        self.breaker_state = gauge(
            "nbo_redis_breaker_state",
            "Circuit breaker around the service's Redis calls: 0 closed, 1 half-open, 2 open "
            "(several workers: the worst).",
            ["breaker"],
        )
        self.audit_records = counter(
            "nbo_audit_records",
            "Decisions handed to the audit trail, by outcome (written, dropped: queue full, "
            "failed: still queued at shutdown).",
            ["outcome"],
        )
        self.feature_set_age = FeatureSetAge()
        self.registry.register(self.feature_set_age)
        self._served: dict[Gauge, set[tuple[str, ...]]] = {}
        # The series the request path counts, by label values (``Children``).
        self._requests = Children(self.http_requests)
        self._route_durations = Children(self.http_duration)
        self._degraded = Children(self.degraded)
        self._exclusions = Children(self.exclusions)
        self._stages = Children(self.stage_duration)
        self._variants = Children(self.recommendations)
        for stage in STAGES:  # every stage's series exists from the start, at zero
            self._stages[stage]

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.writes.inc(self._requests[route, method, str(status)])
        self.writes.observe(self._route_durations[route], seconds)

    def observe_decision(self, decision: Decision) -> None:
        if decision.degraded_reason is not None:
            self.writes.inc(self._degraded[decision.degraded_reason.value])
        # Rule is a StrEnum: the member is its own label value (no ``.value`` lookup each).
        children = self._exclusions
        counts = Tally(map(_RULE, decision.exclusions))
        self.writes.inc_each([(children[rule], count) for rule, count in counts.items()])

    def observe_recorded(
        self, decision: Decision, variant: str, seconds: Mapping[str, float]
    ) -> None:
        """Everything counted of one answered recommendation, once it is sent: what
        :meth:`observe_decision`, :meth:`observe_variant` and :meth:`observe_stages` count,
        handed to the batch in one call (one hold of its lock, not four); the exclusions are
        counted by rule at the batch's flush (``service.infra.metric_batch.Counted``)."""
        degraded = decision.degraded_reason
        key = (variant, "false" if degraded is None else "true")
        child = self._variants.get(key)
        if child is None:  # a variant's child is made once, after its label is checked
            _check_domain("nbo_recommendations_total", "variant", variant)
            child = self._variants[key]
        increments = [(child, 1)]
        if degraded is not None:
            increments.append((self._degraded[degraded.value], 1))
        stages = self._stages
        self.writes.add(
            increments,
            [(stages[stage], value) for stage, value in seconds.items()],
            # Exclusions by rule, counted at the flush (the list is never changed once made).
            (self._exclusions, _RULE, decision.exclusions) if decision.exclusions else None,
        )

    def observe_stages(self, seconds: Mapping[str, float]) -> None:
        children = self._stages
        self.writes.observe_each([(children[stage], value) for stage, value in seconds.items()])

    def observe_reads_sent(self, reads: int) -> None:
        """One round trip carrying ``reads`` feature reads (``CoalescedReader``'s hook)."""
        self.writes.inc(self.feature_reads, reads)
        self.writes.inc(self.feature_read_round_trips)

    def observe_redis_error(self, operation: str, exc: BaseException) -> None:
        self.redis_errors.labels(operation=operation, kind=redis_error_kind(exc)).inc()

    def set_breaker_state(self, breaker: str, state: str) -> None:
        """``state``: closed, half_open or open (``service.infra.breaker.BreakerState``)."""
        self.breaker_state.labels(breaker=breaker).set(BREAKER_STATE_VALUES[state])

    def observe_audit(self, outcome: str, count: int) -> None:
        # Written at once: once per audit batch (the writer thread), not per request.
        _check_domain("nbo_audit_records_total", "outcome", outcome)
        self.audit_records.labels(outcome=outcome).inc(count)

    def observe_reload(self, model: str, outcome: str) -> None:
        """Count one model alias check that changed something or failed."""
        _check_domain("nbo_model_reloads_total", "outcome", outcome)
        self.model_reloads.labels(model=model, outcome=outcome).inc()

    def observe_event(self, event_type: str, status: str) -> None:
        self.events_ingested.labels(type=event_type, status=status).inc()

    def set_models(self, *models: LoadedModel | None) -> None:
        self._replace(
            self.model_info,
            [(m.name, str(m.version)) for m in models if m is not None],
        )

    def set_serving(self, state: ServingState) -> None:
        """Model versions and sources of a serving state (startup and every hot swap)."""
        self.set_models(
            state.recommender, state.churn, state.challenger, state.maturity, state.response
        )
        variants: list[tuple[str, ...]] = []
        sources: list[tuple[str, ...]] = []
        for slot, variant in VARIANT_OF_SLOT.items():
            model = getattr(state, slot)
            if model is not None:
                variants.append((variant, model.name, str(model.version)))
        for slot, source in state.model_sources.items():
            model = getattr(state, slot)
            if model is not None:
                sources.append((model.name, source))
        self._replace(self.model_variant_info, variants)
        self._replace(self.model_source, sources)

    def _replace(self, gauge: Gauge, labelsets: list[tuple[str, ...]]) -> None:
        """Set ``gauge`` to 1 for exactly ``labelsets``; the ones no longer served go.

        In multiprocess mode a removed child would live on in this process's file, so it
        is set to 0 instead (the dashboard shows series above 0).
        """
        stale = self._served.get(gauge, set()) - set(labelsets)
        for labels in stale:
            if self.multiprocess_dir is None:
                gauge.remove(*labels)
            else:
                gauge.labels(*labels).set(0)
        for labels in labelsets:
            gauge.labels(*labels).set(1)
        self._served[gauge] = set(labelsets)

    def observe_variant(self, variant: str, decision: Decision) -> None:
        _check_domain("nbo_recommendations_total", "variant", variant)
        self.writes.inc(self._variants[variant, "true" if decision.degraded else "false"])

    def track_feature_set(self, current: Callable[[], FeatureSetInfo | None]) -> None:
        """Compute the feature-set age at scrape time from whatever ``current()`` returns."""
        self.feature_set_age.current = current

    def flush(self) -> int:
        """Write the pending per-request observations; the number of series written."""
        return self.writes.flush()

    async def flush_every(self, seconds: float) -> None:
        """:meth:`flush` every ``seconds``, until cancelled (the app's lifespan runs it).

        On the event loop: a flush is a few dozen value writes, less than a hop to a thread.
        A flush that fails is logged and the next one runs (what it held is lost).
        """
        while True:
            await asyncio.sleep(seconds)
            try:
                self.flush()
            except Exception:
                log.exception("metrics flush failed")

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (all workers' in multiprocess mode).

        This process's pending observations are flushed first: its own are never stale.
        """
        self.flush()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self.feature_set_age)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def worker_exiting(self) -> None:
        """Drop this process's live gauges from the shared files (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
