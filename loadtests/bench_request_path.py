"""In-process benchmark of the request path: ``service.decision.recommend.recommend`` without HTTP.

Builds the service's runtime from the NBO_* settings (models from the registry, the live
feature set in Redis, as ``nbo serve`` does), replays ``--requests`` recommendation requests
for ids from ``--customers`` one after another, and prints the mean time per request and
per stage (from the stage histogram). A script that prints figures, not a test: compare
two code versions by running it on each, one after the other, on a quiet machine.

``--evict-mb N`` writes an N MB buffer between requests (not timed), so each request
starts with the CPU caches holding little of the model - as in the served app, where
the other worker, Redis and the load generator run in between. With 0 (the default)
the replay runs warm and flatters the model's share.

Example:
    NBO_HOME=/tmp/ops python -m loadtests.bench_request_path --customers ids.txt --evict-mb 16
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

import numpy as np

from core.settings import get_settings
from service.api.schemas import RecommendationRequest
from service.app import _start
from service.decision.recommend import recommend
from service.infra.metrics import ServiceMetrics
from service.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=Path, required=True, help="id file, one a line")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--evict-mb", type=int, default=0, help="MB written between requests (cold caches)"
    )
    args = parser.parse_args()
    ids = args.customers.read_text().split()
    if not ids:
        raise SystemExit(f"error: no customer ids in {args.customers}")
    metrics = ServiceMetrics()
    runtime = _start(get_settings(), metrics)
    runtime.audit.start()  # the write-behind thread, as the service's lifespan does
    rng = random.Random(args.seed)
    requests = [
        RecommendationRequest(customer_id=rng.choice(ids), channel="app", k=3)
        for _ in range(args.requests)
    ]
    evict = np.zeros(max(args.evict_mb, 0) * (1 << 20) // 8)
    seconds, before = asyncio.run(_replay(runtime, requests, metrics, evict))
    runtime.audit.stop()
    after = _stage_sums(metrics)
    print(f"requests: {len(requests)}, mean {seconds / len(requests) * 1e6:.0f} us per request")
    for stage, total in after.items():
        mean_us = (total - before.get(stage, 0.0)) / len(requests) * 1e6
        print(f"  {stage:<14} {mean_us:8.0f} us")


async def _replay(
    runtime: Runtime,
    requests: list[RecommendationRequest],
    metrics: ServiceMetrics,
    evict: np.ndarray,
) -> tuple[float, dict[str, float]]:
    """Warm up on 200 requests, then time ``requests`` (``evict`` rewritten before each,
    untimed); the stage sums before timing."""
    for request in requests[:200]:  # caches, first-call costs
        await (await recommend(request, "bench", runtime)).record()
    before = _stage_sums(metrics)
    seconds = 0.0
    for request in requests:
        evict += 1.0
        started = time.perf_counter()
        await (await recommend(request, "bench", runtime)).record()
        seconds += time.perf_counter() - started
    await runtime.reader.aclose()
    return seconds, before


def _stage_sums(metrics: ServiceMetrics) -> dict[str, float]:
    sums: dict[str, float] = {}
    metrics.flush()  # the observations wait in the process until a flush
    for family in metrics.stage_duration.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                sums[sample.labels["stage"]] = sample.value
    return sums


if __name__ == "__main__":
    main()
