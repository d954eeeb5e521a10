"""One customer's decisions and feedback events, newest first, a page at a time.

Read through the per-customer indexes the audit writer and the event store keep
(``core.redis_keys.customer_decisions_key`` / ``customer_events_key``): a page costs two
round trips (the index slice and the entries it names, pipelined) however long the
stream, which is what keeps a customer with thousands of decisions under the page budget.
Index entries whose stream entry was trimmed since are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from core.redis_keys import (
    customer_decisions_key,
    customer_events_key,
    decisions_key,
    events_key,
)
from core.redis_server import RedisClient
from core.settings import Settings
from features.audit_features import decode_decision

PAGE_SIZE = 20


@dataclass(frozen=True)
class TimelinePage:
    decisions: list[dict[str, Any]]
    """Decision records of this page, newest first; each with ``events`` (oldest first)."""
    page: int
    pages: int
    total: int
    trimmed: int = 0
    """Indexed decisions of this page no longer in the stream (older than its retention)."""
    unmatched_events: list[dict[str, Any]] = field(default_factory=list)


def _entries(
    client: RedisClient, stream: str, ids: list[bytes]
) -> list[tuple[bytes, dict[bytes, bytes]] | None]:
    """The stream entries of ``ids`` (None for a trimmed one), in one pipelined round trip."""
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for entry in ids:
        pipe.xrange(stream, min=entry, max=entry, count=1)
    found = cast(list[list[tuple[bytes, dict[bytes, bytes]]]], pipe.execute())
    return [hits[0] if hits else None for hits in found]


def decision_count(client: RedisClient, settings: Settings, pseudonym: str) -> int:
    return int(cast(int, client.zcard(customer_decisions_key(settings.audit_prefix, pseudonym))))


def read_page(
    client: RedisClient, settings: Settings, pseudonym: str, page: int, size: int = PAGE_SIZE
) -> TimelinePage:
    """Page ``page`` (1 = newest) of the customer's decisions with the events citing them."""
    index = customer_decisions_key(settings.audit_prefix, pseudonym)
    total = decision_count(client, settings, pseudonym)
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    ids = cast(list[bytes], client.zrevrange(index, start, start + size - 1))
    records: list[dict[str, Any]] = []
    trimmed = 0
    for entry in _entries(client, decisions_key(settings.audit_prefix), ids):
        raw = entry[1].get(b"d") if entry is not None else None
        if raw is None:
            trimmed += 1
            continue
        record = decode_decision(client, settings.audit_prefix, raw)
        record["stream_id"] = entry[0].decode() if entry is not None else ""
        record["events"] = []
        records.append(record)
    unmatched: list[dict[str, Any]] = []
    if records:
        oldest_ms = min(int(r["stream_id"].split("-")[0]) for r in records)
        newest_ms = None if page == 1 else max(int(r["stream_id"].split("-")[0]) for r in records)
        by_request = {r.get("request_id"): r for r in records}
        for event in events_since(client, settings, pseudonym, oldest_ms):
            decision = by_request.get(event.get("request_id"))
            if decision is not None:
                decision["events"].append(event)
            elif newest_ms is None:
                unmatched.append(event)
    return TimelinePage(records, page, pages, total, trimmed, unmatched)


def events_since(
    client: RedisClient, settings: Settings, pseudonym: str, since_ms: int, limit: int = 2000
) -> list[dict[str, Any]]:
    """The customer's feedback events stored from ``since_ms`` on, oldest first."""
    index = customer_events_key(settings.events_prefix, pseudonym)
    ids = cast(list[bytes], client.zrangebyscore(index, since_ms, "+inf", start=0, num=limit))
    events = []
    for entry in _entries(client, events_key(settings.events_prefix), ids):
        if entry is not None:
            events.append({k.decode(): v.decode() for k, v in entry[1].items()})
    return events


def events_of(
    client: RedisClient, settings: Settings, record: dict[str, Any]
) -> list[dict[str, Any]]:
    """The feedback events citing one decision (read through its customer's index)."""
    pseudonym = record.get("customer")
    stream_id = record.get("stream_id")
    if not isinstance(pseudonym, str) or not isinstance(stream_id, str):
        return []
    since_ms = int(stream_id.split("-")[0])
    request_id = record.get("request_id")
    return [
        e
        for e in events_since(client, settings, pseudonym, since_ms)
        if e.get("request_id") == request_id
    ]
