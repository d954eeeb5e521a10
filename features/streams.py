"""Reading the Redis Streams of the decision audit trail and the feedback events.

The streams are written by the service and read by offline jobs (exports, ``nbo audit
why``); their keys are in ``core.redis_keys``. Stream entry ids start with the
milliseconds at which Redis appended the entry, so a time range is an id range
(``XRANGE key <ms> +``).
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
