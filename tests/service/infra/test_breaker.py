"""The circuit breaker's state machine (a fake clock) and its concurrency (real threads).

The breaker with a real Redis that dies is in ``tests/service/infra/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from service.infra.breaker import BreakerOpenError, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def down() -> None:
    raise redis.ConnectionError("connection refused")


def up() -> str:
    return "PONG"


def test_opens_after_consecutive_failures_probes_once_and_closes() -> None:
    clock = Clock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker("redis", 3, 2.0, on_change=changes.append, clock=clock)
    for _ in range(2):
        with pytest.raises(redis.ConnectionError):
            breaker.call(down)
    assert breaker.call(up) == "PONG"  # a success resets the count
    for _ in range(3):
        with pytest.raises(redis.ConnectionError):
            breaker.call(down)
    assert breaker.state is BreakerState.OPEN and breaker.is_open()
    with pytest.raises(BreakerOpenError) as refused:
        breaker.call(up)  # refused without calling
    assert refused.value.retry_after_seconds == pytest.approx(2.0)
    clock.now += 2.0
    with pytest.raises(redis.ConnectionError):
        breaker.call(down)  # the probe fails: open again for another 2 s
    assert breaker.state is BreakerState.OPEN
    clock.now += 1.0
    with pytest.raises(BreakerOpenError):
        breaker.call(up)
    clock.now += 1.0
    assert breaker.call(up) == "PONG"  # the probe succeeds
    assert breaker.state is BreakerState.CLOSED and breaker.retry_after() == 0.0
    assert changes == ["open", "half_open", "open", "half_open", "closed"]


def test_an_error_reply_means_redis_is_up() -> None:
    breaker = CircuitBreaker("redis", 1, 2.0, clock=Clock())

    def wrong_type() -> None:
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        breaker.call(wrong_type)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", 1, 1.0, clock=clock)
    with pytest.raises(redis.ConnectionError):
        breaker.call(down)
    clock.now += 1.0
    entered, release = threading.Event(), threading.Event()

    def probing() -> None:  # runs only once the breaker let it through as the probe
        entered.set()
        assert release.wait(60)

    probe = threading.Thread(target=breaker.call, args=(probing,))
    probe.start()
    assert entered.wait(60), "the probe was not let through"
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpenError):
        breaker.call(up)  # a second caller while the probe is out
    release.set()
    probe.join(60)
    assert breaker.state is BreakerState.CLOSED


def test_calls_run_concurrently() -> None:
    """Unlike pybreaker 1.4 (one lock held across the call), calls do not queue: 20 calls
    that each wait for all 20 to be inside the breaker at once can only return if none
    waits for another (serialized, the first would wait alone until the barrier breaks)."""
    breaker = CircuitBreaker("redis", 5, 1.0)
    inside = threading.Barrier(20, timeout=60)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(breaker.call(inside.wait)))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == list(range(20)), "calls did not run at the same time"
    assert breaker.state is BreakerState.CLOSED


def test_coroutine_calls_share_the_state_with_plain_calls() -> None:
    """The request path's asyncio reads and the threads' plain calls use one breaker: an
    outage seen by either side opens it for both, and a coroutine probe can close it."""
    clock = Clock()
    breaker = CircuitBreaker("redis", 2, 2.0, clock=clock)

    async def down_async() -> None:
        raise redis.TimeoutError("read timed out")

    async def up_async() -> str:
        return "PONG"

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def scenario() -> None:
        with pytest.raises(redis.TimeoutError):
            await breaker.call_async(down_async)
        with pytest.raises(redis.ConnectionError):
            breaker.call(down)  # the second consecutive failure, from the other side
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(BreakerOpenError):
            await breaker.call_async(up_async)
        clock.now += 2.0
        with pytest.raises(asyncio.CancelledError):
            await breaker.call_async(cancelled)  # a cancelled probe is not Redis' fault...
        assert breaker.state is BreakerState.OPEN
        assert await breaker.call_async(up_async) == "PONG"  # ...the next call probes
        assert breaker.state is BreakerState.CLOSED
        assert breaker.call(up) == "PONG"

    asyncio.run(scenario())
