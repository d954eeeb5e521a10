"""Summaries of one load phase: latency percentiles, achieved rate, errors.

Latencies are measured from each request's *scheduled* start, not from when the client
got round to sending it: if the server (or the client) falls behind, the wait counts as
latency instead of silently lowering the offered rate (no coordinated omission).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of already sorted values; NaN when empty.

    Nearest rank, not interpolation: every reported figure is a latency some request had.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class PhaseRecorder:
    """Collects the outcome of every request of one phase (single event loop, no locks)."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count
    degraded: int = 0
    send_lag: list[float] = field(default_factory=list)  # seconds behind schedule at send

    def ok(self, seconds: float, degraded: bool) -> None:
        self.latencies.append(seconds)
        self.degraded += degraded

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


@dataclass(frozen=True)
class PhaseSummary:
    """What one phase achieved; ``to_json`` gives milliseconds and rates rounded for reading."""

    target: str
    offered_rate: float
    duration_seconds: float
    sent: int
    succeeded: int
    errors: dict[str, int]
    degraded: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    achieved_rate: float
    client_lag_p99_ms: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 2)

        return {
            "target": self.target,
            "offered_rate": round(self.offered_rate, 1),
            "duration_seconds": round(self.duration_seconds, 2),
            "sent": self.sent,
            "succeeded": self.succeeded,
            "errors": self.error_count,
            "errors_by_kind": dict(sorted(self.errors.items())),
            "degraded": self.degraded,
            "p50_ms": ms(self.p50_ms),
            "p95_ms": ms(self.p95_ms),
            "p99_ms": ms(self.p99_ms),
            "max_ms": ms(self.max_ms),
            "achieved_rate": round(self.achieved_rate, 1),
            "client_lag_p99_ms": ms(self.client_lag_p99_ms),
        }


def summarize(
    target: str, offered_rate: float, recorder: PhaseRecorder, elapsed_seconds: float
) -> PhaseSummary:
    """Percentiles of the successful requests; achieved rate = successes / wall time.

    ``elapsed_seconds`` runs from the first scheduled start to the last answer, so a server
    that falls behind shows an achieved rate below the offered one.
    """
    values = sorted(recorder.latencies)
    lag = sorted(recorder.send_lag)
    sent = len(values) + sum(recorder.errors.values())
    return PhaseSummary(
        target=target,
        offered_rate=offered_rate,
        duration_seconds=elapsed_seconds,
        sent=sent,
        succeeded=len(values),
        errors=dict(recorder.errors),
        degraded=recorder.degraded,
        p50_ms=percentile(values, 50) * 1000,
        p95_ms=percentile(values, 95) * 1000,
        p99_ms=percentile(values, 99) * 1000,
        max_ms=(values[-1] * 1000) if values else math.nan,
        achieved_rate=len(values) / elapsed_seconds if elapsed_seconds > 0 else 0.0,
        client_lag_p99_ms=percentile(lag, 99) * 1000,
    )


def meets_latency_goal(summary: PhaseSummary, p99_limit_ms: float) -> bool:
    """Sustained: no errors, p99 under the limit, and the offered rate actually achieved.

    The last condition (95% of offered) rejects a step where the client or server fell so
    far behind that the requests spread over a longer time than scheduled.
    """
    return (
        summary.error_count == 0
        and summary.succeeded > 0
        and summary.p99_ms < p99_limit_ms
        and summary.achieved_rate >= 0.95 * summary.offered_rate
    )


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` rounded, or None when undefined."""
    if denominator <= 0 or math.isnan(numerator) or math.isnan(denominator):
        return None
    return round(numerator / denominator, 3)
