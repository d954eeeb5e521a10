"""Prometheus metrics of one service instance.

Each app gets its own ``CollectorRegistry`` (not the process-global default) so that apps
built side by side - tests, or a second app in one process - never collide or share counts.
With several uvicorn workers each process exposes its own numbers; Prometheus scrapes and
sums per instance. Label values are bounded sets (route templates, rule and reason enums,
model names and versions): never a customer id or a raw path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from features.online_store import FeatureSetInfo
from registry.client import LoadedModel
from service.decision import Decision
from service.state import ServingState

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""From a cache-hit request (about a millisecond) to the 1 s that counts as broken."""

UNMATCHED_ROUTE = "<unmatched>"
"""Route label of a request no route matched (a 404): one label, whatever the path."""


class ServiceMetrics:
    """The service's metrics, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_requests = Counter(
            "nbo_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "nbo_http_request_duration_seconds",
            "HTTP request duration by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feature_fetch_duration = Histogram(
            "nbo_feature_fetch_duration_seconds",
            "Duration of the one Redis round trip that fetches a customer's features.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.degraded = Counter(
            "nbo_recommendations_degraded",
            "Recommendations answered by the fallback, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.exclusions = Counter(
            "nbo_exclusions",
            "Products filtered out of recommendations, by suitability or eligibility rule.",
            ["rule"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "nbo_model_info",
            "1 for each model version the service is serving with.",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_reloads = Counter(
            "nbo_model_reloads",
            "Model alias checks that changed something or failed, by model and outcome "
            "(swapped, refused, removed, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.model_source = Gauge(
            "nbo_model_source",
            "1 where a loaded model came from: the registry or the last-known-good cache.",
            ["model", "source"],
            registry=self.registry,
        )
        self.recommendations = Counter(
            "nbo_recommendations",
            "Recommendations by variant (champion / challenger) and whether degraded.",
            ["variant", "degraded"],
            registry=self.registry,
        )
        self.feature_set_age = Gauge(
            "nbo_feature_set_age_seconds",
            "Seconds since the live feature set was materialized (NaN when none is live).",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route=route, method=method, status=str(status)).inc()
        self.http_duration.labels(route=route).observe(seconds)

    def observe_decision(self, decision: Decision) -> None:
        if decision.degraded_reason is not None:
            self.degraded.labels(reason=decision.degraded_reason.value).inc()
        for exclusion in decision.exclusions:
            self.exclusions.labels(rule=exclusion.rule.value).inc()

    def set_models(self, *models: LoadedModel | None) -> None:
        self.model_info.clear()
        for model in models:
            if model is not None:
                self.model_info.labels(model=model.name, version=str(model.version)).set(1)

    def set_serving(self, state: ServingState) -> None:
        """Model versions and sources of a serving state (startup and every hot swap)."""
        self.set_models(state.recommender, state.churn, state.challenger)
        self.model_source.clear()
        for slot, source in state.model_sources.items():
            model = getattr(state, slot)
            if model is not None:
                self.model_source.labels(model=model.name, source=source).set(1)

    def observe_variant(self, variant: str, decision: Decision) -> None:
        self.recommendations.labels(
            variant=variant, degraded="true" if decision.degraded else "false"
        ).inc()

    def track_feature_set(self, current: Callable[[], FeatureSetInfo | None]) -> None:
        """Compute the feature-set age at scrape time from whatever ``current()`` returns."""

        def age() -> float:
            info = current()
            if info is None:
                return math.nan
            return (datetime.now(UTC) - info.created_at).total_seconds()

        self.feature_set_age.set_function(age)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
