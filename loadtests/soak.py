"""Soak: hold a steady request rate for a long time and watch memory and errors.

``python -m loadtests.soak --url http://127.0.0.1:8000 --rate 20 --duration 600``
(also ``nbo loadtest soak``) drives the load runner's open-loop request mix
(``loadtests.driver``) in windows of ``--window`` seconds and, between windows, samples
the resident memory (RSS) of every process of the service: the process listening on the
URL's port and all its children (the uvicorn workers), or ``--pid`` and its children.
It prints one JSON report: per window the latency percentiles, errors and RSS; overall
the errors by kind and every process's RSS at start and end. A leak shows as RSS that
keeps climbing window after window; a slow degradation as p99 or errors that do.

Not part of the test suite (it takes as long as you ask); the figures of a 10-minute run
are in docs/performance.md ("Soak").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests.driver import RequestMix, drive, new_client
from loadtests.options import LoadInputError, check_alive, read_customer_ids
from loadtests.processes import rss_mb, service_processes
from loadtests.stats import PhaseSummary

MAX_SOAK_SECONDS = 24 * 3600.0
EXIT_BAD_INPUT = 2
EXIT_ERRORS = 1


@dataclass(frozen=True)
class SoakOptions:
    url: str
    rate: float
    duration: float
    customers: Path
    window: float = 60.0
    pid: int | None = None
    unknown_share: float = 0.05
    timeout: float = 2.0
    pool: int = 100
    seed: int = 7
    api_key: str | None = None  # sent as X-API-Key (scope recommend)

    def validate(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise LoadInputError(f"--url {self.url!r} is not an http(s) URL")
        if not 0 < self.rate <= 5000:
            raise LoadInputError(f"--rate {self.rate:g} must be above 0 and at most 5000")
        if not 0 < self.duration <= MAX_SOAK_SECONDS:
            raise LoadInputError(
                f"--duration {self.duration:g} must be above 0 and at most {MAX_SOAK_SECONDS:g}"
            )
        if not 0 < self.window <= self.duration:
            raise LoadInputError("--window must be above 0 and at most --duration")


async def soak(options: SoakOptions, progress: Any) -> dict[str, Any]:
    options.validate()
    mix = RequestMix(read_customer_ids(options.customers), options.unknown_share, options.seed)
    check_alive(options.url)
    processes = service_processes(options.url, options.pid)
    if not processes:
        port = urlsplit(options.url).port
        raise LoadInputError(f"no local process listens on port {port}; give --pid")
    roles = {str(p.pid): " ".join(p.cmdline()[:6])[:120] for p in processes}
    start_rss = rss_mb(processes)
    windows: list[dict[str, Any]] = []
    totals = {"sent": 0, "succeeded": 0, "degraded": 0}
    errors: dict[str, int] = {}
    started = time.monotonic()
    count = max(1, round(options.duration / options.window))
    async with new_client(options.pool, options.timeout, options.api_key) as client:
        for number in range(count):
            # Each window gets different customers, in the load runner's mix.
            window_mix = RequestMix(mix.customer_ids, mix.unknown_share, options.seed + number)
            bodies = window_mix.bodies(max(1, round(options.rate * options.window)))
            summary: PhaseSummary = await drive(
                client, options.url, options.rate, bodies, target="service",
                timeout_seconds=options.timeout,
            )  # fmt: skip
            row = summary.to_json()
            totals["sent"] += summary.sent
            totals["succeeded"] += summary.succeeded
            totals["degraded"] += summary.degraded
            for kind, n in summary.errors.items():
                errors[kind] = errors.get(kind, 0) + n
            windows.append(
                {
                    "window": number + 1,
                    "elapsed_seconds": round(time.monotonic() - started, 1),
                    **{k: row[k] for k in ("sent", "errors", "achieved_rate", "p50_ms")},
                    **{k: row[k] for k in ("p99_ms", "max_ms", "degraded")},
                    "rss_mb": rss_mb(processes),
                }
            )
            progress(
                f"window {number + 1}/{count}: p99 {row['p99_ms']} ms, {row['errors']} errors, "
                f"RSS {windows[-1]['rss_mb']}"
            )
    end_rss = rss_mb(processes)
    return {
        "config": {
            "url": options.url,
            "rate": options.rate,
            "duration_seconds": options.duration,
            "window_seconds": options.window,
            "customers_file": str(options.customers),
            "unknown_share": options.unknown_share,
            "timeout_seconds": options.timeout,
        },
        "processes": roles,
        "totals": {**totals, "errors": sum(errors.values()), "errors_by_kind": errors},
        "rss_mb": {
            "start": start_rss,
            "end": end_rss,
            "growth": {
                pid: round(end - start_rss[pid], 1)  # type: ignore[operator]
                for pid, end in end_rss.items()
                if end is not None and start_rss.get(pid) is not None
            },
        },
        "windows": windows,
    }


def parse_args(argv: Sequence[str] | None) -> SoakOptions:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.soak",
        description="Steady open-loop load for a long time; RSS of every service process.",
        epilog="Example: python -m loadtests.soak --url http://127.0.0.1:8000 --rate 20 "
        "--duration 600 --customers var/demo_customers.txt",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("NBO_LOADTEST_API_KEY"),
        help="X-API-Key with the recommend scope (default: $NBO_LOADTEST_API_KEY)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s offered")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds in all")
    parser.add_argument(
        "--customers", type=Path, default=Path("var/demo_customers.txt"), help="id file"
    )
    parser.add_argument("--window", type=float, default=60.0, help="seconds per sample")
    parser.add_argument("--pid", type=int, default=None, help="service main pid (default: by port)")
    parser.add_argument("--unknown-share", type=float, default=0.05, help="share of unknown ids")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request timeout (s)")
    ns = parser.parse_args(argv)
    return SoakOptions(
        url=ns.url,
        rate=ns.rate,
        duration=ns.duration,
        customers=ns.customers,
        window=ns.window,
        pid=ns.pid,
        unknown_share=ns.unknown_share,
        timeout=ns.timeout,
        api_key=ns.api_key,
    )


def execute(options: SoakOptions) -> int:
    """Run, print the JSON report; 1 when any request failed, 2 for bad input."""

    def progress(message: str) -> None:
        print(f"soak: {message}", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(soak(options, progress))
    except LoadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report, indent=2))
    return EXIT_ERRORS if report["totals"]["errors"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    return execute(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
