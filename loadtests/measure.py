"""One measured phase against one target, and the search for the highest rate it sustains.

A phase is a warm-up (discarded) and a measured run, driven either by the Python client
(``loadtests.driver``: a fixed rate, open loop) or by the native ``wrk``
(``loadtests.wrk``: a fixed rate through a Lua schedule, or closed loop). The search
(:func:`find_max_rate`) steps the rate, or with wrk the connection count, until the p99
misses :data:`P99_GOAL_MS` or requests fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from loadtests.driver import RECOMMENDATIONS_PATH, RequestMix, drive, new_client
from loadtests.options import MAX_RATE, LoadInputError, LoadOptions
from loadtests.processes import cpu_seconds, service_processes
from loadtests.stats import PhaseSummary, meets_latency_goal
from loadtests.wrk import CONNECTION_LADDER, WrkError, run_wrk

WRK_BODIES = 4096  # distinct request bodies a wrk run rotates through
P99_GOAL_MS = 50.0
FIND_MAX_STEPS = 10
FIND_MAX_GROWTH = 1.5
FIND_MAX_PRECISION = 1.1  # stop bisecting when the failing rate is within 10% of the passing
DRAIN_SECONDS = 30.0  # at most this long waiting for an overloaded server to catch up


@dataclass(frozen=True)
class Measured:
    """One measured phase, and the load generator's own figures when it was wrk."""

    summary: PhaseSummary
    client: dict[str, Any] | None = None


Phase = Callable[[float], Awaitable[Measured]]
"""Drives the load for the given seconds and returns what it measured."""


async def measure(
    url: str,
    target: str,
    rate: float | None,
    duration: float,
    options: LoadOptions,
    mix: RequestMix,
    *,
    warmup: float,
    after_warmup: Callable[[], None] | None = None,
    connections: int | None = None,
) -> Measured:
    """``warmup`` seconds at ``rate`` (discarded), then one measured phase of ``duration``.

    ``after_warmup`` runs between the two (e.g. to snapshot Redis counters). ``rate=None``
    (wrk only) is closed loop: every connection sends again as soon as it is answered.
    """
    phases = (
        _wrk_phases(url, target, rate, options, mix, connections)
        if options.uses_wrk
        else _client_phases(url, target, rate, options, mix)
    )
    async with phases as phase:
        if warmup > 0:
            await phase(warmup)
        if after_warmup is not None:
            after_warmup()
        return await phase(duration)


@contextlib.asynccontextmanager
async def _client_phases(
    url: str, target: str, rate: float | None, options: LoadOptions, mix: RequestMix
) -> AsyncIterator[Phase]:
    """Phases of the Python client at ``rate``, on one connection pool."""
    assert rate is not None, "the Python client only drives fixed rates"
    async with new_client(
        options.pool, options.timeout, options.api_key, options.connections
    ) as client:

        async def phase(seconds: float) -> Measured:
            bodies = mix.bodies(max(1, round(rate * seconds)))
            return Measured(
                await drive(
                    client, url, rate, bodies, target=target, timeout_seconds=options.timeout
                )
            )

        yield phase


@contextlib.asynccontextmanager
async def _wrk_phases(
    url: str,
    target: str,
    rate: float | None,
    options: LoadOptions,
    mix: RequestMix,
    connections: int | None,
) -> AsyncIterator[Phase]:
    """Phases of ``wrk`` over :data:`WRK_BODIES` request bodies (a wrk failure: bad input)."""
    bodies = mix.bodies(WRK_BODIES)
    common: dict[str, Any] = {
        "path": RECOMMENDATIONS_PATH,
        "connections": connections or options.connections,
        "threads": options.threads,
        "rate": rate,
        "api_key": options.api_key,
        "timeout": options.timeout,
    }

    async def phase(seconds: float) -> Measured:
        try:
            result = await asyncio.to_thread(run_wrk, url, bodies, duration=seconds, **common)
        except WrkError as exc:
            raise LoadInputError(str(exc)) from None
        client = result.client_json() | {"connections": common["connections"]}
        return Measured(result.summary(target, rate), client)

    yield phase


async def find_max_rate(
    url: str, target: str, options: LoadOptions, mix: RequestMix
) -> dict[str, Any]:
    """Highest rate with p99 < 50 ms, no errors and the offered rate achieved.

    With wrk: closed-loop runs over :data:`CONNECTION_LADDER` (:func:`_find_max_wrk`).
    With the Python client: grows the rate by 1.5x from ``--rate`` until a step fails,
    then bisects between the last passing and the first failing rate; at most
    ``FIND_MAX_STEPS`` rates. A rate that misses the p99 goal without errors is measured
    once more and fails only if that run misses too: on a shared machine one stall of
    another process should not decide it.
    """
    if options.uses_wrk:
        return await _find_max_wrk(url, target, options, mix)
    passing: float | None = None
    failing: float | None = None
    rate = options.rate
    steps: list[dict[str, Any]] = []
    for _ in range(FIND_MAX_STEPS):
        if steps:
            await drain(url)
        # The first step warms up; later ones follow a loaded server directly.
        summary = (
            await measure(
                url,
                target,
                rate,
                options.step_duration,
                options,
                mix,
                warmup=options.warmup * (not steps),
            )
        ).summary
        ok = meets_latency_goal(summary, P99_GOAL_MS)
        steps.append({**summary.to_json(), "meets_goal": ok})
        if not ok and summary.error_count == 0:
            # A p99 miss without errors may be one stall of a shared machine: the rate
            # fails only if a second run at it fails too (same rule for both targets).
            await drain(url)
            summary = (
                await measure(url, target, rate, options.step_duration, options, mix, warmup=0.0)
            ).summary
            ok = meets_latency_goal(summary, P99_GOAL_MS)
            steps.append({**summary.to_json(), "meets_goal": ok, "confirmation": True})
        if ok:
            passing = rate
        else:
            failing = rate
        if failing is None:
            rate = rate * FIND_MAX_GROWTH
        elif passing is None:
            rate = rate / 2
        else:
            if failing / passing <= FIND_MAX_PRECISION:
                break
            rate = (passing + failing) / 2
        if rate > MAX_RATE or rate < 1:
            break
    return {"max_rate": round(passing, 1) if passing else None, "steps": steps}


async def _find_max_wrk(
    url: str, target: str, options: LoadOptions, mix: RequestMix
) -> dict[str, Any]:
    """The highest closed-loop throughput over :data:`CONNECTION_LADDER` whose p99 stays
    under 50 ms without errors.

    More connections raise the throughput until the servers' cores are busy, then only
    the queueing (the p99); the ladder stops at the first step that misses the goal twice
    (the same second chance as the Python search) or after two steps that gain < 5%.
    """
    best: float | None = None
    flat = 0
    steps: list[dict[str, Any]] = []
    processes = service_processes(url)

    async def step(connections: int, warmup: float) -> tuple[bool, PhaseSummary]:
        cpu_before = 0.0

        def snapshot() -> None:
            nonlocal cpu_before
            cpu_before = cpu_seconds(processes)

        measured = await measure(
            url, target, None, options.step_duration, options, mix,
            warmup=warmup, after_warmup=snapshot, connections=connections,
        )  # fmt: skip
        summary = measured.summary
        ok = meets_latency_goal(summary, P99_GOAL_MS)
        row = {**summary.to_json(), "meets_goal": ok, "client": measured.client}
        if processes and summary.sent:
            spent = cpu_seconds(processes) - cpu_before
            row["server_cpu"] = {
                "cpu_seconds": round(spent, 3),
                "ms_per_request": round(spent * 1000 / summary.sent, 3),
                "cores_used": round(spent / summary.duration_seconds, 2),
            }
        steps.append(row)
        return ok, summary

    for connections in CONNECTION_LADDER:
        if steps:
            await drain(url)
        ok, summary = await step(connections, options.warmup * (not steps))
        if not ok and summary.error_count == 0:
            await drain(url)
            ok, summary = await step(connections, 0.0)
            steps[-1]["confirmation"] = True
        if not ok:
            break
        rate = summary.achieved_rate
        flat = flat + 1 if best is not None and rate < best * 1.05 else 0
        best = rate if best is None else max(best, rate)
        if flat >= 2:
            break
    return {
        "max_rate": round(best, 1) if best else None,
        "generator": "wrk",
        "steps": steps,
    }


async def drain(url: str) -> None:
    """Wait (bounded) until ``/healthz`` answers within the p99 goal again.

    An overloaded server goes on working through requests its clients gave up on; without
    this pause, that backlog would be charged to the next step's rate.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    async with httpx.AsyncClient(timeout=5.0) as client:
        while loop.time() < deadline:
            started = loop.time()
            with contextlib.suppress(httpx.HTTPError):
                await client.get(url.rstrip("/") + "/healthz")
                if (loop.time() - started) * 1000 < P99_GOAL_MS:
                    await asyncio.sleep(1.0)
                    return
            await asyncio.sleep(0.5)
