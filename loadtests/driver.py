"""Open-loop load: requests start on a fixed schedule, whatever the answers do.

A closed-loop client (send, wait, send again) slows down with the server and so hides the
very stalls a latency budget is about ("coordinated omission"). Here request ``i`` is
scheduled at ``start + i / rate`` and its latency runs from that scheduled time to the
answer: time spent queued in the client's connection pool, or behind a stalled event
loop, counts. How far behind schedule requests were actually sent is reported as the
client lag, so a saturated load generator is visible instead of passing as a slow server.

The generator's own garbage collector is kept out of the figures too: a full collection
walks every object the process holds (httpx, the Redis client, the request bodies) and
stalls the event loop meanwhile - a burst of slow answers charged to whichever target is
being measured. :func:`drive` collects and freezes what exists before a phase starts, so
the collections during it walk only what the phase allocates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import orjson

from loadtests.stats import PhaseRecorder, PhaseSummary, summarize

CHANNELS = ("app", "push", "sms", "email", "advisor", "branch")
RECOMMENDATIONS_PATH = "/v1/recommendations"
DEGRADED_MARKERS = (b'"degraded":true', b'"degraded": true', b'"found":false')
"""How an answer says it had no feature record: the service's fallback, or the baseline's."""


@dataclass(frozen=True)
class RequestMix:
    """Which customers the load asks about: known ids from a file plus a share of unknown."""

    customer_ids: Sequence[str]
    unknown_share: float = 0.05
    seed: int = 7

    def bodies(self, count: int) -> list[bytes]:
        """``count`` request bodies; the same seed gives the same sequence for every target."""
        rng = random.Random(self.seed)
        out = []
        for n in range(count):
            if rng.random() < self.unknown_share:
                customer = f"UNKNOWN{n:09d}"
            else:
                customer = rng.choice(self.customer_ids)
            body = {"customer_id": customer, "channel": rng.choice(CHANNELS), "k": 3}
            out.append(orjson.dumps(body))
        return out


class SpreadClient:
    """Keep-alive clients that requests take turns on, so the load spans ``connections``.

    Why not one pool: a server with several worker processes balances per *connection*
    (the kernel gives each new connection to one worker, which keeps it). A single pool
    reuses whichever connection is idle, so a load of a few hundred requests/s at a few
    milliseconds each rides on one or two connections - one worker, one core - and the
    run measures a single process, not the service. Many app users behind a gateway
    arrive on many connections; round-robin over ``connections`` clients (like ``wrk -c``)
    reproduces that. Each client may still open more connections when its share of the
    load overlaps (``pool_size`` in all).
    """

    def __init__(
        self, connections: int, pool_size: int, timeout_seconds: float, api_key: str | None
    ) -> None:
        per_client = max(1, -(-pool_size // connections))
        headers = {
            "content-type": "application/json",
            **({"x-api-key": api_key} if api_key else {}),
        }
        self._clients = [
            httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=per_client, max_keepalive_connections=per_client
                ),
                timeout=httpx.Timeout(timeout_seconds),
                headers=headers,
            )
            for _ in range(connections)
        ]
        self._turn = itertools.cycle(self._clients)

    async def post(self, url: str, content: bytes) -> httpx.Response:
        return await next(self._turn).post(url, content=content)

    async def __aenter__(self) -> SpreadClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self._clients:
            await client.aclose()


def new_client(
    pool_size: int, timeout_seconds: float, api_key: str | None = None, connections: int = 16
) -> SpreadClient:
    """Keep-alive connections for a whole phase, spread as a bank's API gateway would."""
    return SpreadClient(connections, pool_size, timeout_seconds, api_key)


async def drive(
    client: SpreadClient,
    base_url: str,
    rate: float,
    bodies: Sequence[bytes],
    *,
    target: str,
    timeout_seconds: float,
) -> PhaseSummary:
    """Send ``bodies`` at ``rate`` requests/s (open loop) and summarize the answers.

    Bounded: ``len(bodies)`` requests, and at most ``timeout_seconds`` of waiting after the
    last one is sent (a request still open then is counted as a timeout).
    """
    url = base_url.rstrip("/") + RECOMMENDATIONS_PATH
    loop = asyncio.get_running_loop()
    recorder = PhaseRecorder()

    async def one(body: bytes, scheduled: float) -> None:
        recorder.send_lag.append(max(0.0, loop.time() - scheduled))
        try:
            response = await client.post(url, content=body)
        except httpx.TimeoutException:
            recorder.error("timeout")
            return
        except httpx.ConnectError:
            recorder.error("connect")
            return
        except httpx.HTTPError as exc:
            recorder.error(type(exc).__name__)
            return
        if response.status_code != 200:
            recorder.error(f"http_{response.status_code}")
            return
        content = response.content
        recorder.ok(loop.time() - scheduled, any(marker in content for marker in DEGRADED_MARKERS))

    tasks: set[asyncio.Task[None]] = set()
    with collector_frozen():
        start = loop.time() + 0.05
        for i, body in enumerate(bodies):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(body, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=timeout_seconds + 1.0)
            for task in pending:
                task.cancel()
                recorder.error("timeout")
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
    return summarize(target, rate, recorder, loop.time() - start)


@contextlib.contextmanager
def collector_frozen() -> Iterator[None]:
    """Collect now, then exempt every existing object from collections until the exit.

    Collections still run (a long soak does not grow without bound); they just skip the
    generator's long-lived objects, which are what makes a full collection slow.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
