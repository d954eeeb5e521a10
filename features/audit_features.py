"""Feature records in the audit trail: stored as the bytes the decision read.

Why: written as JSON, the feature record a decision read is about half of its audit
record (6.6 of 14.6 KB on the demo bank), and every decision pays for it three times:
serializing it, sending it to Redis, and Redis keeping it (and appending it to its
append-only file). The compact record it was read as is ~320 bytes. So the service
writes that record's bytes (base64, field :data:`PACKED` instead of ``features``) and its
schema under :func:`core.redis_keys.audit_schema_key`, in the same script call as the
first batch of decisions that uses it (``service.infra.audit_writer``; sent again every
``SCHEMA_RESEND_SECONDS``); the schema key never expires, so a decision stays readable
after its feature set is retired.

Reading back, :func:`decode_decision` restores the ``features`` dict from the bytes and
the schema (content-addressed: the record's header names the schema's id, so one cache
serves every client), and every reader - the decision look-up, the console, the exports,
replays, the response model's training - sees the record it always saw. A decision whose
schema cannot be read gets ``features: null`` and :data:`UNREADABLE` saying why.

The two largest lists of a decision are stored compactly too, and :func:`expand` (the
first step of :func:`unpack`, so of every reader) gives them back in the shape readers
know - a list of objects - at the same place in the record:

* ``exclusions``: ``{"products": [id, ...], "rules": [rule, ...], "details": [detail,
  ...]}``: three columns, one value per excluded product, in order (~0.9 of the 1.4 KB of
  objects, and three arrays to build instead of an object per product). Read back as
  ``[{"product_id", "rule", "detail"}, ...]``.
* ``arbitration.priorities``: one array per candidate, its values in the order of
  :data:`PRIORITY_FIELDS` (~0.9 of 2.5 KB: the keys are not repeated). Read back as one
  object per candidate with those keys. Fields may only ever be appended to
  :data:`PRIORITY_FIELDS`: a row shorter than it (written before a field was added) reads
  back without the missing fields.

Records stored before this form (lists of objects) read back as they are: the two forms
are told apart by their JSON types (an object, resp. arrays, instead of a list of objects).
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any, cast

import orjson

from core.redis_keys import audit_schema_key
from core.redis_server import RedisClient
from features.record_codec import HEADER_BYTES, RecordCodec
from features.record_schema import RecordSchema

PACKED = "features_packed"
"""The audit record's field holding the feature record's compact bytes (base64)."""
UNREADABLE = "features_unreadable"
"""Set on read when a packed record could not be decoded: why."""

PRIORITY_FIELDS = (
    "product_id",
    "propensity",
    "business_value",
    "context_weight",
    "lever",
    "boost",
    "priority",
    "trigger",
    "p_accept",
    "channel_affinity",
)
"""The keys of a stored priority row's values, in order (append only: see the module)."""

_codecs: dict[str, RecordCodec] = {}
_lock = threading.Lock()


def pack(raw: bytes) -> str:
    """A compact feature record as the audit record stores it."""
    return binascii.b2a_base64(raw, newline=False).decode("ascii")  # base64.b64encode's C


def schema_json(schema: RecordSchema) -> bytes:
    """What :func:`core.redis_keys.audit_schema_key` holds for ``schema``."""
    return orjson.dumps(schema.to_json())


def decode_decision(client: RedisClient, audit_prefix: str, raw: bytes | str) -> dict[str, Any]:
    """One audit stream entry's ``d`` field as the decision record, features unpacked."""
    record: dict[str, Any] = orjson.loads(raw)
    return unpack(client, audit_prefix, record)


def expand(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (changed in place) with its compact exclusions and priorities (see the
    module docstring) turned back into lists of objects; a record in the older form, or
    with neither field, is returned unchanged."""
    exclusions = record.get("exclusions")
    if isinstance(exclusions, dict):
        record["exclusions"] = [
            {"product_id": product_id, "rule": rule, "detail": detail}
            for product_id, rule, detail in zip(
                exclusions["products"], exclusions["rules"], exclusions["details"], strict=True
            )
        ]
    arbitration = record.get("arbitration")
    if isinstance(arbitration, dict):
        priorities = arbitration.get("priorities")
        if priorities and not isinstance(priorities[0], dict):
            # strict=False: a row written before a field was appended is shorter.
            arbitration["priorities"] = [
                dict(zip(PRIORITY_FIELDS, row, strict=False)) for row in priorities
            ]
    return record


def unpack(client: RedisClient, audit_prefix: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its compact parts expanded (:func:`expand`) and its packed feature
    record (if any) turned back into ``features``."""
    expand(record)
    packed = record.pop(PACKED, None)
    if packed is None:
        return record
    record["features"] = None
    try:
        data = base64.b64decode(packed, validate=True)
    except (binascii.Error, TypeError, ValueError):
        record[UNREADABLE] = "not base64"
        return record
    schema_id = data[1:HEADER_BYTES].hex()
    codec = _codec(client, audit_prefix, schema_id)
    if codec is None:
        record[UNREADABLE] = f"record schema {schema_id} not found"
        return record
    try:
        record["features"] = codec.decode(data)
    except ValueError as exc:
        record[UNREADABLE] = str(exc)
    return record


def _codec(client: RedisClient, audit_prefix: str, schema_id: str) -> RecordCodec | None:
    """The codec of schema ``schema_id``: from the process cache, else read once."""
    with _lock:
        codec = _codecs.get(schema_id)
    if codec is not None:
        return codec
    raw = cast(bytes | None, client.get(audit_schema_key(audit_prefix, schema_id)))
    if raw is None:
        return None
    try:
        schema = RecordSchema.from_json(orjson.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None
    if schema.id != schema_id:  # a key holding another schema: refuse rather than misread
        return None
    with _lock:
        return _codecs.setdefault(schema_id, schema.codec)
