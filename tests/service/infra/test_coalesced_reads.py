"""Reads started in the same turn of the event loop go to a real Redis in one pipeline,
and each read gets exactly what it would have got alone: its reply or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from core.settings import Settings
from service.infra.breaker import BreakerOpenError, CircuitBreaker
from service.infra.coalesced_reads import CoalescedReader
from service.infra.feature_fetch import READ_SCRIPT
from service.infra.redis_guard import connect_guarded_async
from tests.support.paths import free_port

ECHO = "return {KEYS[1], redis.call('GET', KEYS[1]), ARGV[1]}"
"""Each reply names its key and argument, so a reply handed to the wrong read shows."""


def guarded_reader(settings: Settings, max_batch: int = 64) -> CoalescedReader:
    breaker = CircuitBreaker("redis", 3, 30.0)
    return CoalescedReader(connect_guarded_async(settings, breaker), max_batch=max_batch)


def run(coroutine_fn: Any) -> Any:
    return asyncio.run(coroutine_fn())


def test_reads_made_while_one_is_in_flight_share_one_round_trip_each_with_its_own_reply(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    keys = [f"{key_prefix}:k{i}" for i in range(20)]
    for i, key in enumerate(keys[::2]):  # every other key exists
        redis_client.set(key, f"value-{i}")

    async def scenario() -> tuple[list[Any], list[Any], int]:
        reader = guarded_reader(settings)
        try:
            together = await asyncio.gather(
                *(reader.eval(ECHO, 1, key, f"arg-{i}") for i, key in enumerate(keys))
            )
            batches = reader.batches_sent
            alone = [
                await reader.client.eval(ECHO, 1, key, f"arg-{i}") for i, key in enumerate(keys)
            ]
            return together, alone, batches
        finally:
            await reader.aclose()

    together, alone, batches = run(scenario)
    assert batches == 2  # the first read, sent at once; the 19 made while it was in flight
    assert together == alone
    assert together[2] == [keys[2].encode(), b"value-1", b"arg-2"]
    assert together[1] == [keys[1].encode(), None, b"arg-1"]


def test_reads_awaited_one_after_another_are_sent_one_by_one(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.set(f"{key_prefix}:a", "1")

    async def scenario() -> tuple[list[Any], int]:
        reader = guarded_reader(settings)
        try:
            replies = [await reader.eval(ECHO, 1, f"{key_prefix}:a", n) for n in range(3)]
            return replies, reader.batches_sent
        finally:
            await reader.aclose()

    replies, batches = run(scenario)
    assert batches == 3
    assert [reply[2] for reply in replies] == [b"0", b"1", b"2"]


def test_a_command_error_fails_only_its_own_read(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    """The request path's own script on a contact key of the wrong type: that read fails
    with Redis's error, the reads beside it in the same pipeline are answered."""
    record, contact, wrong = (f"{key_prefix}:{name}" for name in ("record", "contact", "wrong"))
    redis_client.set(record, b"features")
    redis_client.zadd(contact, {"offer-1": 5.0})
    redis_client.set(wrong, "not a sorted set")

    async def scenario() -> list[Any]:
        reader = guarded_reader(settings)
        try:
            return await asyncio.gather(
                reader.eval(READ_SCRIPT, 2, record, contact, 0),
                reader.eval(READ_SCRIPT, 2, record, wrong, 0),
                reader.eval(READ_SCRIPT, 2, f"{key_prefix}:missing", contact, 0),
                return_exceptions=True,
            )
        finally:
            await reader.aclose()

    first, second, third = run(scenario)
    assert first == [b"features", [b"offer-1", b"5"]]
    assert isinstance(second, redis.ResponseError) and "WRONGTYPE" in str(second)
    assert third == [None, [b"offer-1", b"5"]]


def test_a_cancelled_read_leaves_the_others_of_its_batch_alone(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.set(f"{key_prefix}:a", "A")

    async def scenario() -> tuple[list[Any], bool]:
        reader = guarded_reader(settings)
        try:
            tasks = [
                asyncio.ensure_future(reader.eval(ECHO, 1, f"{key_prefix}:a", n)) for n in range(4)
            ]
            await asyncio.sleep(0)  # every task has queued its read
            tasks[1].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            return done, tasks[1].cancelled()
        finally:
            await reader.aclose()

    done, cancelled = run(scenario)
    assert cancelled
    assert [reply[2] for i, reply in enumerate(done) if i != 1] == [b"0", b"2", b"3"]


def test_batches_are_bounded(
    settings: Settings, key_prefix: str, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[list[Any], int]:
        reader = guarded_reader(settings, max_batch=4)
        try:
            replies = await asyncio.gather(
                *(reader.eval(ECHO, 1, f"{key_prefix}:x", n) for n in range(10))
            )
            return replies, reader.batches_sent
        finally:
            await reader.aclose()

    replies, batches = run(scenario)
    assert batches == 4  # the first read alone, then the 9 others in batches of 4, 4, 1
    assert [reply[2] for reply in replies] == [str(n).encode() for n in range(10)]


def test_a_dead_server_fails_every_read_of_the_batch_then_the_breaker_refuses_at_once(
    settings: Settings,
) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    breaker = CircuitBreaker("redis", 2, 30.0)  # opens at the second failed round trip
    reader = CoalescedReader(connect_guarded_async(dead, breaker))

    async def scenario() -> tuple[list[Any], list[Any], int]:
        try:
            first = await asyncio.gather(
                *(reader.eval(ECHO, 1, "k", n) for n in range(4)), return_exceptions=True
            )
            sent = reader.batches_sent
            then = await asyncio.gather(
                *(reader.eval(ECHO, 1, "k", n) for n in range(4)), return_exceptions=True
            )
            return first, then, sent
        finally:
            await reader.aclose()

    first, then, sent = run(scenario)
    assert sent == 2  # the first read alone, the three others together: two failed trips
    assert all(type(error) is redis.ConnectionError for error in first)
    assert breaker.is_open()
    assert all(isinstance(error, BreakerOpenError) for error in then)


def test_max_batch_must_be_positive(settings: Settings) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    with pytest.raises(ValueError, match="max_batch"):
        CoalescedReader(client, max_batch=0)
