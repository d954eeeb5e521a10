"""Rebuild the per-customer indexes of the decision and event streams from the streams.

The service indexes each decision and feedback event under its pseudonymous customer as
it appends it (``core.redis_keys.customer_decisions_key`` / ``customer_events_key``: a
sorted set of stream entry ids scored by ``core.redis_keys.index_score``, the newest
``CUSTOMER_INDEX_MAX`` kept, expiring ``audit_index_ttl_seconds`` after the customer's
last entry). Entries appended before the indexes existed - or by a deployment whose index
keys were lost - are in the streams but in no index, so the console's timeline misses
them. :func:`reindex` walks each stream once and adds every entry to its customer's index,
leaving the index exactly as the service would have built it:

- idempotent: an entry id already indexed is added again with the same score, so a rerun
  (or a run while the service keeps appending) changes nothing it should not;
- the same cap: each touched index is trimmed to its newest ``CUSTOMER_INDEX_MAX`` ids;
- the same expiry: ``EXPIREAT`` the customer's newest entry plus the TTL (never earlier
  than the index's own TTL, which a newer decision may have extended); a customer whose
  newest entry is older than the TTL gets no index, as with the service.

Writes go in pipelines of one batch of stream entries at a time (no transaction and no
script across keys, so it also runs on Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson

from core.redis_keys import (
    CUSTOMER_INDEX_MAX,
    customer_decisions_key,
    customer_events_key,
    decisions_key,
    events_key,
    index_score,
)
from core.redis_server import RedisClient
from core.settings import Settings
from features.streams import read_stream

Progress = Callable[[str, int], None]
"""Called after each batch with ``(stream name, entries read so far in that stream)``."""

BATCH = 2000
"""Stream entries per pipeline."""


@dataclass(frozen=True)
class ReindexResult:
    """What one run did, per stream."""

    decisions: int  # decision entries read
    decision_customers: int  # customers whose decision index was (re)written
    events: int  # event entries read
    event_customers: int  # customers whose event index was (re)written


def reindex(
    client: RedisClient, settings: Settings, progress: Progress | None = None
) -> ReindexResult:
    """Index every decision and event of the streams under its customer (module docstring).

    "Now" is Redis's own clock (``TIME``), the one its expiries count by.
    """
    now_ms = _now_ms(client)
    ttl_ms = settings.audit_index_ttl_seconds * 1000
    decisions, decision_customers = _reindex_stream(
        client,
        decisions_key(settings.audit_prefix),
        _decision_customer,
        lambda pseudonym: customer_decisions_key(settings.audit_prefix, pseudonym),
        now_ms - ttl_ms,
        ttl_ms,
        lambda read: progress("decisions", read) if progress is not None else None,
    )
    events, event_customers = _reindex_stream(
        client,
        events_key(settings.events_prefix),
        _event_customer,
        lambda pseudonym: customer_events_key(settings.events_prefix, pseudonym),
        now_ms - ttl_ms,
        ttl_ms,
        lambda read: progress("events", read) if progress is not None else None,
    )
    return ReindexResult(decisions, decision_customers, events, event_customers)


def _decision_customer(values: dict[bytes, bytes]) -> str | None:
    raw = values.get(b"d")
    if raw is None:
        return None
    record: Any = orjson.loads(raw)
    customer = record.get("customer") if isinstance(record, dict) else None
    return str(customer) if customer else None


def _event_customer(values: dict[bytes, bytes]) -> str | None:
    customer = values.get(b"customer")
    return customer.decode() if customer else None


def _reindex_stream(
    client: RedisClient,
    stream: str,
    customer_of: Callable[[dict[bytes, bytes]], str | None],
    index_key: Callable[[str], str],
    live_after_ms: int,
    ttl_ms: int,
    progress: Callable[[int], None],
) -> tuple[int, int]:
    """Add every entry of ``stream`` to its customer's index; return (entries, customers).

    The newest entry id of each customer is collected as the stream is read, so trimming
    and expiry are set once per customer at the end, from the whole stream.
    """
    newest: dict[str, int] = {}  # index key -> milliseconds of its newest entry
    read = 0
    pipe = client.pipeline(transaction=False)
    pending = 0
    for entry_id, values in read_stream(client, stream, batch=BATCH):
        read += 1
        pseudonym = customer_of(values)
        if pseudonym is None:
            continue
        millis = int(entry_id.split("-", 1)[0])
        key = index_key(pseudonym)
        if millis > newest.get(key, -1):
            newest[key] = millis
        pipe.zadd(key, {entry_id: index_score(entry_id)})
        pending += 1
        if pending == BATCH:
            pipe.execute()
            pending = 0
            progress(read)
    if pending:
        pipe.execute()
    progress(read)
    stale = [key for key, millis in newest.items() if millis <= live_after_ms]
    keys = list(newest)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        ttls = cast(list[int], _pipelined(client, chunk, lambda p, k: p.pttl(k)))
        now_ms = _now_ms(client)
        pipe = client.pipeline(transaction=False)
        for key, remaining in zip(chunk, ttls, strict=True):
            if newest[key] <= live_after_ms:
                pipe.delete(key)  # the service's index would have expired by now
                continue
            pipe.zremrangebyrank(key, 0, -(CUSTOMER_INDEX_MAX + 1))
            expire_at = newest[key] + ttl_ms
            if remaining > 0:
                expire_at = max(expire_at, now_ms + remaining)
            pipe.pexpireat(key, expire_at)
        pipe.execute()
    return read, len(keys) - len(stale)


def _pipelined(
    client: RedisClient, keys: list[str], command: Callable[[Any, str], object]
) -> list[object]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        command(pipe, key)
    return cast(list[object], pipe.execute())


def _now_ms(client: RedisClient) -> int:
    """Redis's own clock (what PTTL counts from)."""
    seconds, micros = cast(tuple[int, int], client.time())
    return int(seconds) * 1000 + int(micros) // 1000
