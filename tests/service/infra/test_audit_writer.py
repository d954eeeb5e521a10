"""The audit trail's write-behind (service.infra.audit_writer) against a real Redis."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis

from core.redis_keys import customer_decisions_key, decisions_key
from core.settings import Settings
from features.audit_export import read_decision
from service.infra import audit_writer
from service.infra.audit_writer import AuditWriter
from tests.support.fault_redis import DurableRedis
from tests.support.paths import free_port


def record(request_id: str) -> dict[str, object]:
    return {"request_id": request_id, "offers": [{"product_id": "credit_card"}]}


def test_batches_land_whole_and_findable(settings: Settings, redis_client: redis.Redis) -> None:
    outcomes: Counter[str] = Counter()
    calls: list[int] = []

    def count(outcome: str, n: int) -> None:
        outcomes[outcome] += n
        calls.append(n)

    writer = AuditWriter(redis_client, settings, on_outcome=count)
    writer.start()
    ids = [f"{i:032x}" for i in range(300)]
    threads = [
        threading.Thread(target=lambda part=part: [writer.submit(i, record(i)) for i in part])
        for part in (ids[:100], ids[100:200], ids[200:])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=5)
    writer.stop()
    assert outcomes == {"written": 300}
    assert len(calls) < 300, "decisions submitted together are written in batches"
    assert redis_client.xlen(decisions_key(settings.audit_prefix)) == 300
    for request_id in (ids[0], ids[150], ids[-1]):
        found = read_decision(redis_client, settings, request_id)
        assert found is not None and found["request_id"] == request_id


def test_each_customer_s_decisions_are_indexed_newest_last_capped_with_a_ttl(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_writer, "CUSTOMER_INDEX_MAX", 5)
    writer = AuditWriter(redis_client, settings)
    for number in range(8):
        customer = "a" * 64 if number % 2 == 0 else "b" * 64
        writer.submit(f"{number:032x}", {**record(f"{number:032x}"), "customer": customer})
    assert writer.flush(timeout=5)
    index = customer_decisions_key(settings.audit_prefix, "a" * 64)
    entries = [e.decode() for e in redis_client.zrange(index, 0, -1)]
    assert len(entries) == 4
    stream = decisions_key(settings.audit_prefix)
    names = [
        orjson.loads(redis_client.xrange(stream, e, e)[0][1][b"d"])["request_id"] for e in entries
    ]
    assert names == [f"{n:032x}" for n in (0, 2, 4, 6)]
    assert 0 < redis_client.ttl(index) <= settings.audit_index_ttl_seconds
    for number in range(8, 16):  # beyond the cap: the oldest entries leave the index
        writer.submit(f"{number:032x}", {**record(f"{number:032x}"), "customer": "a" * 64})
    assert writer.flush(timeout=5)
    newest = redis_client.zrange(index, 0, -1)
    assert len(newest) == 5
    assert (
        orjson.loads(redis_client.xrange(stream, newest[0], newest[0])[0][1][b"d"])["request_id"]
        == f"{11:032x}"
    )


def test_a_full_queue_drops_and_counts_never_blocks(
    settings: Settings, redis_client: redis.Redis
) -> None:
    small = settings.model_copy(update={"audit_queue_max": 100})
    dropped: list[int] = []
    writer = AuditWriter(
        redis_client, small, on_outcome=lambda o, n: dropped.append(n) if o == "dropped" else None
    )  # not started: nothing drains the queue
    accepted = [writer.submit(f"{i:032x}", record(str(i))) for i in range(130)]
    assert accepted.count(True) == 100 and sum(dropped) == 30
    assert writer.flush(timeout=5)  # no thread: written from the caller
    assert redis_client.xlen(decisions_key(small.audit_prefix)) == 100


def test_redis_down_keeps_the_queue_and_writes_when_it_returns(
    settings: Settings, tmp_path: Path
) -> None:
    """The writer's own Redis is down, then comes back on the same port: the queued
    decision is written there and read back by its request id."""
    server = DurableRedis(tmp_path / "redis")  # its port: nothing listens there yet
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.2, socket_timeout=1)
    outcomes: Counter[str] = Counter()
    errors: list[redis.RedisError] = []
    writer = AuditWriter(
        client,
        settings,
        on_outcome=lambda o, n: outcomes.update({o: n}),
        on_error=errors.append,
    )
    writer.start()
    request_id = "a" * 32
    try:
        writer.submit(request_id, record(request_id))
        # Every flush waits for the same queued record; errors show the writer tried.
        assert not writer.flush(timeout=1.0)
        assert writer.pending() == 1 and errors and outcomes["written"] == 0
        server.start()
        assert writer.flush(timeout=60), "the queued decision was not written after Redis came back"
        assert writer.pending() == 0 and outcomes == {"written": 1}
        found = read_decision(client, settings, request_id)
        assert found is not None and found["request_id"] == request_id
        assert client.xlen(decisions_key(settings.audit_prefix)) == 1
    finally:
        writer.stop(timeout=5)
        client.close()
        server.stop()


def test_redis_down_at_shutdown_counts_what_is_left(settings: Settings) -> None:
    """What a writer could not write is not lost silently: it is counted as failed."""
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.05)
    outcomes: Counter[str] = Counter()
    writer = AuditWriter(dead, settings, on_outcome=lambda o, n: outcomes.update({o: n}))
    writer.start()
    writer.submit("b" * 32, record("b" * 32))
    assert not writer.flush(timeout=0.3)
    writer.stop(timeout=0.5)
    assert writer.pending() == 1 and outcomes == {"failed": 1}


def test_stop_writes_what_is_queued(settings: Settings, redis_client: redis.Redis) -> None:
    """``stop`` writes at once: with a 30 s window, waiting it out would take 30 s."""
    window = 30.0
    slow = settings.model_copy(update={"audit_flush_ms": window * 1000})  # beyond the setting's
    writer = AuditWriter(redis_client, slow)  # bound, on purpose: a window no stop can hide in
    writer.start()
    for i in range(5):
        writer.submit(f"{i:032x}", record(str(i)))
    started = time.perf_counter()
    writer.stop(timeout=window * 2)
    assert time.perf_counter() - started < window / 2, "stop waited out the window"
    entries = redis_client.xrange(decisions_key(slow.audit_prefix))
    assert [orjson.loads(e[b"d"])["request_id"] for _, e in entries] == ["0", "1", "2", "3", "4"]
