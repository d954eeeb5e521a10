"""The decision audit trail (Redis Stream) -> durable files, and look-ups by customer.

Redis keeps a bounded window of decisions (``audit_retention``); ``export_audit`` copies
them to JSON Lines (one decision per line, as recorded with its feature record unpacked
(``features.audit_features``), plus its ``stream_id``) or,
for a ``.parquet`` path, to Parquet with the searchable fields as columns and the whole
record as a JSON string. Files are written to a temporary name and renamed into place.

``decisions_for`` answers ``nbo audit why``: the decisions of one pseudonymous customer
(``core.pseudonym``), optionally only those that offered or excluded one product.
``read_decision`` fetches one decision by request id (``GET /v1/decisions/{id}``, and
``POST /v1/events``, which checks an event against the decision it cites).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa

from core.redis_keys import decision_index_key, decisions_key
from core.redis_server import RedisClient
from core.settings import Settings
from features.audit_features import decode_decision, expand
from features.events_export import write_parquet_atomically
from features.streams import read_stream, stream_id_at

AUDIT_SCHEMA = pa.schema(
    [
        ("stream_id", pa.string()),
        ("request_id", pa.string()),
        ("decided_at", pa.string()),
        ("customer", pa.string()),
        ("channel", pa.string()),
        ("offered", pa.list_(pa.string())),
        ("record", pa.string()),
    ]
)


def read_decisions(
    client: RedisClient, audit_prefix: str, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Recorded decisions, oldest first (from ``since`` when given), each with ``stream_id``."""
    start = stream_id_at(since) if since is not None else "-"
    for entry_id, values in read_stream(client, decisions_key(audit_prefix), start):
        raw = values.get(b"d")
        if raw is None:
            continue
        record = decode_decision(client, audit_prefix, raw)
        record["stream_id"] = entry_id
        yield record


def mentions(record: dict[str, Any], product_id: str) -> bool:
    """The decision offered, excluded or scored ``product_id``."""
    return (
        any(o.get("product_id") == product_id for o in record.get("offers") or [])
        or any(e.get("product_id") == product_id for e in record.get("exclusions") or [])
        or product_id in (record.get("candidate_scores") or {})
    )


def decisions_for(
    client: RedisClient,
    audit_prefix: str,
    pseudonym: str,
    product_id: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """One customer's recorded decisions (a scan of the bounded stream), oldest first."""
    return [
        record
        for record in read_decisions(client, audit_prefix, since)
        if record.get("customer") == pseudonym
        and (product_id is None or mentions(record, product_id))
    ]


def export_audit(
    client: RedisClient, audit_prefix: str, out: Path, since: datetime | None = None
) -> int:
    """Write every recorded decision to ``out`` (``.parquet`` or JSON Lines); return how many."""
    records = read_decisions(client, audit_prefix, since)
    if out.suffix == ".parquet":
        rows = [
            {
                "stream_id": r["stream_id"],
                "request_id": r.get("request_id"),
                "decided_at": r.get("decided_at"),
                "customer": r.get("customer"),
                "channel": r.get("channel"),
                "offered": [o.get("product_id") for o in r.get("offers") or []],
                "record": orjson.dumps(r).decode(),
            }
            for r in records
        ]
        write_parquet_atomically(pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA), out)
        return len(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for record in records:
                handle.write(orjson.dumps(record) + b"\n")
                count += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


# KEYS: the request's index key, the decisions stream (one hash tag, so one slot on a
# Redis Cluster). Returns {entry id, record} or nil.
_READ_DECISION = """
local entry = redis.call('GET', KEYS[1])
if not entry then return nil end
local found = redis.call('XRANGE', KEYS[2], entry, entry)
if #found == 0 then return nil end
local values = found[1][2]
for i = 1, #values, 2 do
  if values[i] == 'd' then return {entry, values[i + 1]} end
end
return nil
"""


def read_decision(
    client: RedisClient, settings: Settings, request_id: str, features: bool = True
) -> dict[str, Any] | None:
    """The recorded decision of ``request_id``; None when unknown, expired or trimmed.

    One round trip (a script reading the index key, then the stream entry), as the event
    route calls it for every event. ``features=False`` leaves the record's packed feature
    record as stored (``features_packed``, ``features.audit_features``): the event route
    checks an event against the offers and needs neither its decoding nor a read of its
    schema. Its exclusions and priorities are expanded either way
    (``features.audit_features.expand``).
    """
    prefix = settings.audit_prefix
    script = client.register_script(_READ_DECISION)
    found = cast(
        list[bytes] | None,
        script(keys=[decision_index_key(prefix, request_id), decisions_key(prefix)]),
    )
    if not found:
        return None
    entry, raw = found
    decoded: dict[str, Any] = (
        decode_decision(client, prefix, raw) if features else expand(orjson.loads(raw))
    )
    decoded["stream_id"] = entry.decode()
    return decoded
