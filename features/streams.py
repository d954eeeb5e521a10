"""Redis Stream layout of the decision audit trail and the feedback events.

Written by the service, read by offline jobs (exports, ``nbo audit why``), so the layout
lives here, where both may import it::

    {audit_prefix}:{decisions}                   stream; field ``d`` = one decision (orjson)
    {audit_prefix}:{decisions}:req:{request_id}  stream entry id of that decision (TTL)
    {events_prefix}:{stream}                     stream; one feedback event per entry
    {events_prefix}:{stream}:seen:{event_id}     stream entry id of that event (TTL)

The literal ``{decisions}`` and ``{stream}`` are Redis Cluster hash tags: a stream and its
index keys hash to one slot, so the Lua scripts that append to a stream and set its index
keys (``service.audit_writer``, ``service.events``) touch one slot per call. On a single
Redis they are ordinary characters. (Before Redis Cluster support the keys had no braces:
``{audit_prefix}:decisions``, ``{audit_prefix}:req:{id}``, ``{events_prefix}:stream``,
``{events_prefix}:seen:{id}``; ``nbo redis migrate-keys`` renames them.)

Stream entry ids start with the milliseconds at which Redis appended the entry, so a time
range is an id range (``XRANGE key <ms> +``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import cast

from core.redis_server import RedisClient

EVENT_FIELDS = (
    "event_id",
    "type",
    "customer",  # pseudonymous customer id (core.pseudonym), never the raw id
    "product_id",
    "request_id",
    "channel",
    "timestamp",  # ISO 8601 UTC, when the event happened
    "received_at",  # ISO 8601 UTC, when the service stored it
)


def decisions_key(audit_prefix: str) -> str:
    return f"{audit_prefix}:{{decisions}}"


def decision_index_key(audit_prefix: str, request_id: str) -> str:
    return f"{decisions_key(audit_prefix)}:req:{request_id}"


def events_key(events_prefix: str) -> str:
    return f"{events_prefix}:{{stream}}"


def event_seen_key(events_prefix: str, event_id: str) -> str:
    return f"{events_key(events_prefix)}:seen:{event_id}"


def stream_id_at(moment: datetime) -> str:
    """The smallest stream id at or after ``moment`` (for ``XRANGE``)."""
    return str(int(moment.timestamp() * 1000))


def read_stream(
    client: RedisClient, key: str, start: str = "-", batch: int = 1000
) -> Iterator[tuple[str, dict[bytes, bytes]]]:
    """Every entry from ``start`` on, oldest first, read in ``XRANGE ... COUNT`` pages."""
    low = start
    while True:
        page = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            client.xrange(key, min=low, max="+", count=batch),
        )
        for entry_id, values in page:
            yield entry_id.decode(), values
        if len(page) < batch:
            return
        low = "(" + page[-1][0].decode()  # exclusive: continue after the last entry seen
