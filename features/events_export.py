"""Feedback events (Redis Stream) -> one Parquet file for retraining, written atomically.

Reads ``{events_prefix}:stream`` page by page from the first entry that can hold an event
dated on or after ``since`` (an event's timestamp is never later than its arrival plus
the future tolerance), keeps events whose ``timestamp`` is on or after ``since``, and
writes them to a temporary file renamed over ``out`` only when complete. Customers are
the pseudonymous ids the stream holds (``core.pseudonym``); to join with the canonical
tables, pseudonymise their ``customer_id`` with the same key.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.redis_keys import events_key
from core.redis_server import RedisClient
from features.streams import EVENT_FIELDS, read_stream, stream_id_at

EVENTS_SCHEMA = pa.schema(
    [
        ("stream_id", pa.string()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("customer", pa.string()),
        ("product_id", pa.string()),
        ("request_id", pa.string()),
        ("channel", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
    ]
)


def read_events(
    client: RedisClient, events_prefix: str, since: datetime, tolerance_seconds: float
) -> list[dict[str, object]]:
    """Events dated on or after ``since`` (aware), oldest arrival first."""
    start = stream_id_at(since - timedelta(seconds=tolerance_seconds))
    rows: list[dict[str, object]] = []
    for entry_id, values in read_stream(client, events_key(events_prefix), start):
        row: dict[str, object] = {"stream_id": entry_id}
        for name in EVENT_FIELDS:
            raw = values.get(name.encode())
            row[name] = raw.decode() if raw is not None else None
        for name in ("timestamp", "received_at"):
            text = row[name]
            row[name] = (
                datetime.fromisoformat(text).astimezone(UTC) if isinstance(text, str) else None
            )
        happened = row["timestamp"]
        if isinstance(happened, datetime) and happened >= since:
            rows.append(row)
    return rows


def write_parquet_atomically(table: pa.Table, out: Path) -> None:
    """Write ``table`` next to ``out`` and rename it into place (never a half-written file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_events(
    client: RedisClient,
    events_prefix: str,
    since: datetime,
    out: Path,
    tolerance_seconds: float = 0.0,
) -> int:
    """Write the events dated on or after ``since`` to ``out`` (Parquet); return how many."""
    rows = read_events(client, events_prefix, since, tolerance_seconds)
    table = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
    write_parquet_atomically(table, out)
    return len(rows)
