"""The request path's reads, sent to Redis together: one pipeline per turn of the event loop.

Why: under load a worker has several requests in flight, and each waits on its one
``EVAL`` (``service.infra.feature_fetch``). Sent one by one, every read pays redis-py's
whole per-command path - a pool checkout, packing, a socket write, a reply read, its
timeouts - and a system call each way. Gathered, the reads started in the same turn of
the loop share one checkout, one write and one read: the client's CPU per read falls with
the batch (``python -m loadtests.bench_coalesced_reads`` prints it against single reads).
This is the auto-pipelining of ioredis or Lettuce. Each request still reads everything it
needs in ONE round trip: its own ``EVAL``, answered alongside the others'.

What each read sees is what it would have seen alone: its own reply; a command error (a
key of the wrong type) fails only that read; a connection error, a timeout or the open
circuit breaker (``service.infra.breaker``) fails every read of the batch, as each would
have failed alone (the breaker counts the batch as one failed call). A request cancelled
while its read is in flight (its client went away) leaves the other reads of the batch
alone: the batch is sent by a task of its own.

A read made while no other is in flight is sent at once, straight through the client, as
without this class: at low load a read neither waits a turn nor pays for the batching
(about 10-15 us of client CPU, measured against the client's own ``eval``). Reads made
while others are in flight - a worker under load - are gathered. On a Redis Cluster each
read goes to its customer's node by itself (a pipeline would have to be split by slot
first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.asyncio.cluster

MAX_BATCH = 64
"""Most reads in one pipeline: a bound on one reply's size and on the wait it adds."""

AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
"""The request path reads with redis-py's asyncio client (``service.infra.redis_guard``)."""

_Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class CoalescedReader:
    """``eval`` gathered per event-loop turn; ``get`` and ``zrangebyscore`` (the
    fallback reads of ``service.infra.feature_fetch``) go straight to ``client``.

    Use it on one event loop only, as the client it wraps.
    """

    def __init__(
        self,
        client: AsyncRedisClient,
        max_batch: int = MAX_BATCH,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """``on_sent(reads)``: called once per round trip made for ``eval`` (the service
        counts reads and round trips: ``ServiceMetrics.observe_reads_sent``)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.client = client
        self.max_batch = max_batch
        self.batches_sent = 0  # round trips made for eval, one per batch (tests, benchmarks)
        self._on_sent = on_sent
        self._coalesce = not isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._pending: list[_Pending] = []
        self._in_flight = 0  # reads sent and not yet answered
        self._sending: set[asyncio.Task[None]] = set()

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """``EVAL script numkeys keys... args...``, sent with the others of this turn."""
        if not self._coalesce or (not self._in_flight and not self._pending):
            # Alone (nobody to share a round trip with), or a cluster's node per read.
            self._sent(1)
            self._in_flight += 1
            try:
                return await self.client.eval(script, numkeys, *keys_and_args)  # type: ignore[misc]
            finally:
                self._in_flight -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((script, numkeys, *keys_and_args), future))
        if len(self._pending) == 1:
            # Runs after every callback already due in this turn: the requests that reach
            # their read in this turn join the batch first.
            loop.call_soon(self._send_pending)
        return await future

    async def get(self, key: str) -> Any:
        return await self.client.get(key)

    async def zrangebyscore(self, key: str, low: Any, high: Any, withscores: bool) -> Any:
        return await self.client.zrangebyscore(key, low, high, withscores=withscores)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_batch):
            task = asyncio.ensure_future(self._send(pending[start : start + self.max_batch]))
            self._sending.add(task)  # a task nobody awaits needs a strong reference
            task.add_done_callback(self._sending.discard)

    def _sent(self, reads: int) -> None:
        self.batches_sent += 1
        if self._on_sent is not None:
            self._on_sent(reads)

    async def _send(self, batch: list[_Pending]) -> None:
        self._sent(len(batch))
        self._in_flight += len(batch)
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self.client.eval(*batch[0][0])]
            else:
                pipe = self.client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.eval(*args)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # the loop is shutting down
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the whole batch failed: each read fails as it would alone
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._in_flight -= len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its request was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
