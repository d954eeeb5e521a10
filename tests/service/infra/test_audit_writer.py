"""The audit trail's write-behind (service.infra.audit_writer) against a real Redis."""

from __future__ import annotations

import threading
import time
from collections import Counter

import orjson
import redis

from core.redis_keys import decision_index_key, decisions_key
from core.settings import Settings
from features.audit_export import read_decision
from service.infra.audit_writer import AuditWriter


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
    settings: Settings, redis_client: redis.Redis
) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    up = threading.Event()
    writer = AuditWriter(dead, settings, can_write=up.is_set)
    writer.start()
    try:
        writer.submit("a" * 32, record("a" * 32))
        assert not writer.flush(timeout=0.3)
        assert writer.pending() == 1
    finally:
        writer.stop(timeout=0.5)
    # What a writer could not write is not lost silently: it is still queued and counted.
    assert writer.pending() == 1
    assert redis_client.get(decision_index_key(settings.audit_prefix, "a" * 32)) is None


def test_stop_writes_what_is_queued(settings: Settings, redis_client: redis.Redis) -> None:
    slow = settings.model_copy(update={"audit_flush_ms": 1000.0})
    writer = AuditWriter(redis_client, slow)
    writer.start()
    for i in range(5):
        writer.submit(f"{i:032x}", record(str(i)))
    started = time.perf_counter()
    writer.stop()
    assert time.perf_counter() - started < 0.9, "stop does not wait out the window"
    entries = redis_client.xrange(decisions_key(slow.audit_prefix))
    assert [orjson.loads(e[b"d"])["request_id"] for _, e in entries] == ["0", "1", "2", "3", "4"]
