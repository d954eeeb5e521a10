"""CPU per recommendation of the whole application in process, and where it goes.

Builds the service's FastAPI app from the NBO_* settings (as ``nbo serve`` does: models
from the registry, the live feature set in Redis), runs its lifespan, and calls the app
as an ASGI server would - every middleware, the routing, the body parse, the decision,
the response and the recording after it - for ``--requests`` request bodies of the load
runner's mix (``loadtests.driver.RequestMix``: ids from ``--customers`` plus 5% unknown),
one after another, without sockets. It prints the CPU time per request of the event-loop
thread and of the whole process (the audit writer's thread included).

``--profile`` runs the same loop under ``cProfile`` with the thread's CPU clock and prints
each part's share of the event-loop thread's CPU (cumulative times of the functions that
make up each part). cProfile charges a fixed cost to every Python call, so parts made of
many small calls (the decision's filters) read larger than they are and C work (the tree
walk, JSON) smaller; the shares rank the parts, the first line gives the real total.

``--concurrency N`` keeps N requests in flight at once, as N busy connections on one
worker do (their Redis reads then share round trips: ``service.infra.coalesced_reads``);
the default 1 sends them one after another.

``--parts`` times a dozen functions of the request path in flow with thread-CPU
stopwatches (``loadtests.part_clock``: no profiler, so the microseconds are close to the
real ones) and prints each one's CPU per request; one request at a time.

``--baseline`` runs the same loop through the bare baseline app instead
(``loadtests.baseline_app``: one FastAPI route, one Redis ``GET`` with the service's own
client): the floor the service's cost is compared with, measured the same way.

``--compare-scores`` runs the loop in alternating rounds with the precomputed scores of
``nbo score recommendations`` off (every request scored online) and on (used while they
match the feature set and models), twice each, in one process: the before / after of the
precomputation on the same machine in the same minute.

A script that prints figures, not a test: compare two code versions by running each, one
after the other, on the same machine.

Example:
    NBO_HOME=/tmp/ops NBO_ENVIRONMENT=development NBO_AUTH_DISABLED=true NBO_RATE_LIMIT=off \\
        python -m loadtests.bench_asgi --customers /tmp/ops/demo_customers.txt --profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import get_settings
from loadtests.baseline_app import create_app as create_baseline_app
from loadtests.driver import RECOMMENDATIONS_PATH, RequestMix
from loadtests.part_clock import PartClock, timing_parts
from service.app import create_app

PARTS: dict[str, tuple[str, ...]] = {
    "feature fetch (one Redis EVAL, asyncio client)": ("feature_fetch.py:fetch_features",),
    "body parse and validation": ("json_route.py:parse_body",),
    "recommender: scoring walk": ("boosted.py:prepare",),
    "recommender: reasons of the shown offers": ("recommend.py:model_reasons",),
    "churn risk and its reasons": (
        "churn_risk.py:assess_churn_risk",
        "precomputed.py:precomputed_churn",
    ),
    "precomputed scores: decode": ("recommend.py:_decode_scores",),
    "moments and candidates": ("moments.py:customer_moments", "candidates.py:offer_candidates"),
    "filters: suitability, channel, tier, contact policy": (
        "suitability.py:split_suitable",
        "arbitration.py:split_by_channel",
        "contact_policy.py:split_by_tier_channel",
        "contact_policy.py:split_by_contact_policy",
    ),
    "P(accept) and channel affinity": ("acceptance.py:assess_acceptance",),
    "arbitration, top k, arbitration reasons": (
        "arbitration.py:arbitrate",
        "arbitration.py:top_offers",
        "arbitration.py:arbitration_reasons",
    ),
    "response body (plain JSON types)": ("recommend.py:respond",),
    "recording after the answer (audit record, metrics)": ("recommend.py:record",),
}
"""Part of the request -> the ``file:function`` names whose cumulative time it is."""


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": RECOMMENDATIONS_PATH,
        "raw_path": RECOMMENDATIONS_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(app: Any, body: bytes) -> int:
    """One request through the app; its status."""
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(_scope(body), receive, send)
    return status


async def _run(
    bodies: Sequence[bytes],
    warmup: int,
    profile: cProfile.Profile | None,
    precomputed: bool | None = None,
    baseline: bool = False,
    concurrency: int = 1,
    parts: PartClock | None = None,
) -> tuple[float, float, dict[int, int]]:
    settings = get_settings()
    if precomputed is not None:
        settings = settings.model_copy(update={"precomputed_scores": precomputed})
    app = create_baseline_app(settings) if baseline else create_app(settings)
    statuses: dict[int, int] = {}
    async with app.router.lifespan_context(app):
        for body in bodies[:warmup]:
            await _call(app, body)
        if parts is not None:
            parts.reset()
        thread0, process0 = time.thread_time(), time.process_time()
        if profile is not None:
            profile.enable()
        queue = iter(bodies)

        async def client() -> None:  # one connection's requests, one after another
            for body in queue:
                status = await _call(app, body)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        if profile is not None:
            profile.disable()
        thread = time.thread_time() - thread0
        await asyncio.sleep(0.5)  # the audit writer's last batch
        process = time.process_time() - process0
    return thread, process, statuses


def part_shares(stats: pstats.Stats) -> tuple[float, dict[str, float]]:
    """Total CPU seconds of the profile and each of :data:`PARTS`' seconds."""
    cumulative: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, _, seconds, _) in raw.items():
        key = f"{Path(filename).name}:{function}"
        cumulative[key] = max(cumulative.get(key, 0.0), seconds)
    total: float = stats.total_tt  # type: ignore[attr-defined]
    return total, {
        part: sum(cumulative.get(name, 0.0) for name in names) for part, names in PARTS.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=Path, required=True, help="id file, one a line")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests first")
    parser.add_argument("--profile", action="store_true", help="print each part's share")
    parser.add_argument(
        "--parts", action="store_true", help="print each part's CPU per request (stopwatches)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="drive the bare baseline app instead"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight at once (as connections on one worker; default 1)",
    )
    parser.add_argument(
        "--compare-scores",
        action="store_true",
        help="alternate rounds with the precomputed scores off and on",
    )
    args = parser.parse_args(argv)
    if args.baseline and (args.compare_scores or args.profile or args.parts):
        parser.error("--baseline measures the bare app: not with --compare-scores or --profile")
    if args.parts and (args.profile or args.compare_scores or args.concurrency != 1):
        parser.error("--parts: one request at a time, without --profile or --compare-scores")
    try:
        ids = args.customers.read_text().split()
    except OSError as exc:
        raise SystemExit(f"error: cannot read {args.customers}: {exc.strerror}") from None
    if not ids or args.requests < 1 or args.warmup < 0 or args.concurrency < 1:
        raise SystemExit(
            "error: need customer ids, --requests >= 1, --warmup >= 0 and --concurrency >= 1"
        )
    bodies = RequestMix(ids).bodies(max(args.requests, args.warmup))[: args.requests]
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    print(f"bench_asgi: {args.requests} requests after {args.warmup} warm-up", file=sys.stderr)
    if args.compare_scores:
        for precomputed in (False, True, False, True):
            thread, process, statuses = asyncio.run(_run(bodies, args.warmup, None, precomputed))
            n = len(bodies)
            print(
                f"precomputed scores {'on ' if precomputed else 'off'}: requests {n}, statuses "
                f"{statuses}; CPU per request: event-loop thread {thread / n * 1e6:.0f} us, "
                f"process {process / n * 1e6:.0f} us"
            )
        return
    clock = PartClock() if args.parts else None
    with timing_parts(clock) if clock is not None else contextlib.nullcontext():
        thread, process, statuses = asyncio.run(
            _run(
                bodies,
                args.warmup,
                profile,
                baseline=args.baseline,
                concurrency=args.concurrency,
                parts=clock,
            )
        )
    n = len(bodies)
    print(
        ("baseline " if args.baseline else "")
        + f"requests: {n}, statuses {statuses}; CPU per request: event-loop thread "
        f"{thread / n * 1e6:.0f} us, process {process / n * 1e6:.0f} us"
        + (" (under cProfile: inflated)" if profile is not None else "")
    )
    if profile is not None:
        total, parts = part_shares(pstats.Stats(profile))
        for part, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"{100 * seconds / total:5.1f}%  {part}")
        rest = total - sum(parts.values())
        print(f"{100 * rest / total:5.1f}%  the rest: HTTP middleware, routing, event loop")
    if clock is not None:
        timed = clock.per_request_us(n)
        for label, us, calls in timed:
            print(f"{us:7.1f} us  {label}  ({calls} calls)")
        inside = sum(us for label, us, _ in timed if not label.startswith(" "))
        print(f"{thread / n * 1e6 - inside:7.1f} us  the rest: HTTP stack, body parse, event loop")


if __name__ == "__main__":
    main()
