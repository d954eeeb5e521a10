"""Client CPU per request-path read: alone, and gathered by ``CoalescedReader``.

Sends the request path's own script (``READ_WITH_SCORES_SCRIPT``: record, contact set,
precomputed scores) with the service's guarded asyncio client, ``--reads`` times for each
batch size. Batch 1 is a read awaited alone (as at low load: sent at once, the same path
as the client's own ``eval``, printed first). Batch N is N reads started in the same turn
of the event loop (uvloop's, as under uvicorn), as N requests in flight on one worker:
the first goes at once, the N-1 made while it is in flight share one pipeline. It prints
the event-loop thread's CPU per read and the round trips made. Redis's own CPU is not in
it.

A script that prints figures, not a test: compare the batch sizes of one run.

Example:
    NBO_HOME=/tmp/ops python -m loadtests.bench_coalesced_reads --reads 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import uvloop

from core.settings import get_settings
from service.infra.breaker import CircuitBreaker
from service.infra.coalesced_reads import CoalescedReader
from service.infra.feature_fetch import READ_WITH_SCORES_SCRIPT
from service.infra.redis_guard import connect_guarded, connect_guarded_async

RECORD_BYTES = 330  # about a compact feature record (docs/performance.md)
SCORES_BYTES = 120


async def measure(reads: int, batches: list[int]) -> None:
    settings = get_settings()
    sync = connect_guarded(settings)
    prefix = f"nbo:bench:coalesce:{uuid.uuid4().hex[:8]}"
    record, contact, scores = f"{prefix}:record", f"{prefix}:contact", f"{prefix}:scores"
    sync.set(record, b"r" * RECORD_BYTES)
    sync.set(scores, b"s" * SCORES_BYTES)
    sync.zadd(contact, {"offer-1": 1.0, "offer-2": 2.0})
    reader = CoalescedReader(connect_guarded_async(settings, CircuitBreaker("redis", 3, 30.0)))
    args = (READ_WITH_SCORES_SCRIPT, 3, record, contact, scores, 0)
    try:
        for _ in range(200):  # warm the connection pool and the code
            await reader.eval(*args)
        started = time.thread_time()
        for _ in range(reads):
            await reader.client.eval(*args)  # type: ignore[misc]
        spent = time.thread_time() - started
        print(f"direct   : {spent / reads * 1e6:6.1f} us of client CPU per read (no coalescing)")
        for batch in batches:
            rounds = max(1, reads // batch)
            sent_before = reader.batches_sent
            started = time.thread_time()
            for _ in range(rounds):
                if batch == 1:
                    await reader.eval(*args)
                else:
                    await asyncio.gather(*(reader.eval(*args) for _ in range(batch)))
            spent = time.thread_time() - started
            done = rounds * batch
            print(
                f"batch {batch:3d}: {spent / done * 1e6:6.1f} us of client CPU per read, "
                f"{done} reads in {reader.batches_sent - sent_before} round trips"
            )
    finally:
        await reader.aclose()
        sync.delete(record, contact, scores)
        sync.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20000, help="reads per batch size")
    parser.add_argument(
        "--batches", default="1,2,4,8,16", help="batch sizes, comma-separated (default 1,2,4,8,16)"
    )
    args = parser.parse_args()
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches: not a list of integers: {args.batches!r}")
    if args.reads < 1 or any(b < 1 for b in batches):
        parser.error("--reads and every batch size must be >= 1")
    # The loop uvicorn runs the service on (``uvloop``, a dependency of ``uvicorn[standard]``).
    uvloop.run(measure(args.reads, batches))


if __name__ == "__main__":
    main()
