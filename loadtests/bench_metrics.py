"""CPU of one recommendation's metric calls, batched vs written at once, with several workers.

A recommendation makes these ``ServiceMetrics`` calls (``service.infra.metrics``): the HTTP
request (a counter and a histogram), the feature fetch's round trip (a histogram), the five
stages (histograms), the exclusions of the decision (one counter per rule) and the variant
(a counter) - about twenty value writes when each is written at once. This script runs
them ``--requests`` times in prometheus-client's multiprocess mode (a temporary
``PROMETHEUS_MULTIPROC_DIR``: mmap-backed values, as under ``nbo serve --workers N``), once
written at once (``ServiceMetrics(batched=False)``) and once batched, flushing every
``--flush-every`` requests (500: a worker answering 500 requests/s with the default
``NBO_METRICS_FLUSH_SECONDS`` of 1 s), alternately for ``--rounds`` rounds, and prints the
process CPU (``time.process_time``) per request of each way, flushes included, and their
ratio (medians over the rounds).

A script that prints figures, not a test: the values written are not checked here
(tests/service/infra/test_metric_batch.py compares the two ways' exposition text).

Example:
    nice -n 19 python -m loadtests.bench_metrics --requests 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument(
        "--flush-every", type=int, default=500, help="requests between two flushes (batched)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way (median)")
    parser.add_argument(
        "--exclusions", type=int, default=4, help="rules with exclusions per decision"
    )
    args = parser.parse_args()
    for name in ("requests", "flush_every", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    with tempfile.TemporaryDirectory(prefix="nbo-bench-metrics-") as directory:
        # Before prometheus-client is imported: it picks mmap-backed values at import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        run(args.requests, args.flush_every, args.rounds, args.exclusions)


def run(requests: int, flush_every: int, rounds: int, exclusions: int) -> None:
    from core.suitability import Exclusion, Rule
    from service.decision.outcome import Decision
    from service.infra.metrics import STAGES, ServiceMetrics

    rules = list(Rule)[: max(0, min(exclusions, len(Rule)))]
    decision = Decision(
        offers=[],
        churn_risk=None,
        exclusions=[Exclusion(f"p{n}", rule, "") for n, rule in enumerate(rules)],
        degraded_reason=None,
        feature_set=None,
    )
    stages = {stage: 0.0002 * (n + 1) for n, stage in enumerate(STAGES)}
    ways = {"direct": ServiceMetrics(batched=False), "batched": ServiceMetrics()}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, metrics in ways.items():
            seconds[way].append(one_round(metrics, decision, stages, requests, flush_every))
    per_request = {way: statistics.median(s) / requests * 1e6 for way, s in seconds.items()}
    writes = 1 + 2 + 2 + 2 * len(stages) + len(rules) + 1
    print(
        f"multiprocess mode, {requests} requests x {rounds} rounds, {writes} value writes "
        f"per request when written at once, batched flush every {flush_every} requests"
    )
    for way, micros in per_request.items():
        print(f"{way:>8}: {micros:6.2f} us CPU per request (median of {rounds})")
    print(f"   ratio: {per_request['batched'] / per_request['direct']:.3f} (batched / direct)")


def one_round(
    metrics: Any, decision: Any, stages: dict[str, float], requests: int, flush_every: int
) -> float:
    """Process CPU seconds of ``requests`` recommendations' metric calls (and flushes)."""
    started = time.process_time()
    for n in range(requests):
        metrics.feature_fetch_duration.observe(0.0004)
        metrics.observe_decision(decision)
        metrics.observe_variant("champion", decision)
        metrics.observe_stages(stages)
        metrics.observe_request("/v1/recommendations", "POST", 200, 0.0015)
        if (n + 1) % flush_every == 0:
            metrics.flush()
    metrics.flush()
    return time.process_time() - started


if __name__ == "__main__":
    main()
