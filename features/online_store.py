"""The Redis online store: versioned feature sets behind one ``current`` pointer.

Key layout: ``core.redis_keys.FeatureSetKeys``. A record is keyed by the customer's
pseudonym (``core.pseudonym``) inside the customer's Redis Cluster hash tag, shared with
their contact state, so the request path reads both from one slot in one script. Feature
sets whose metadata has no ``record_keys`` keyed records by the raw customer id; they are
read that way (``FeatureSetInfo.record_keys``), on a single Redis only, until the next
materialization replaces them.

Records: a materialized frame is written as compact binary records
(``features.record_codec``), their schema stored once in the version's metadata
(``FeatureSetInfo.record_schemas``); each record's header names its schema, and a record
whose schema is not one of its set's is refused, never decoded. A set whose metadata has no
schema (written before the compact records, or with :meth:`OnlineStore.write_records`) holds
JSON records and is read as JSON.

A version is written completely under its own keys and only then made visible by
switching ``current``; readers never see a half-written set. On a single Redis records go
in ``MSET`` batches; on Redis Cluster (whose ``MSET`` must stay in one slot) in pipelined
``SET`` s grouped by node. No write spans keys atomically (no MULTI, no Lua across keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any, cast

import orjson
import pandas as pd
import redis.cluster
import redis.lock

from core.pseudonym import pseudonymiser
from core.redis_keys import FeatureSetKeys
from core.redis_server import RedisClient
from core.settings import Settings, get_settings
from features.record_codec import (
    HEADER_BYTES,
    RecordCodec,
    RecordDecodeError,
    SchemaMismatchError,
    encode_chunks,
    schema_for,
)
from features.record_schema import RecordSchema

log = logging.getLogger(__name__)

PSEUDONYM_KEYS = "pseudonym"
"""``FeatureSetInfo.record_keys`` of this layout: ``...:c:{<pseudonym>}`` (hash-tagged)."""
CUSTOMER_ID_KEYS = "customer_id"
"""The layout before Redis Cluster support: ``...:c:<raw customer id>`` (read only)."""

DELETE_BATCH = 1000
WRITER_LOCK_SECONDS = 900.0
"""TTL of the writer lock, renewed after every partition: a partition may take this long."""
ENCODE_ROWS = 50_000
"""Customers encoded at a time by :meth:`OnlineStore.write_frame` (bounds its memory)."""
MSET_RECORDS = 500
"""Records per ``MSET``: each command blocks Redis for well under a millisecond, and a
write batch sends several in one pipelined round trip."""


def make_version(as_of: date, created_at: datetime) -> str:
    """A sortable version id, e.g. ``20261031-20261102T031500123456Z``."""
    return f"{as_of:%Y%m%d}-{created_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"


@dataclass(frozen=True)
class FeatureSetInfo:
    """What a published feature set is: recorded with every decision made from it."""

    version: str
    as_of: date
    created_at: datetime
    customers: int
    feature_names: list[str]
    catalogue_version: str
    record_keys: str = PSEUDONYM_KEYS  # how its record keys name the customer
    moments_version: str | None = None  # core/moments.yaml version (None: set made before it)
    # The schemas of its compact records (features.record_schema); empty: JSON records.
    record_schemas: tuple[RecordSchema, ...] = field(default=(), repr=False)

    @cached_property
    def _codecs(self) -> dict[bytes, RecordCodec]:
        return {codec.header: codec for codec in (s.codec for s in self.record_schemas)}

    def schema_of(self, raw: bytes) -> RecordSchema | None:
        """The schema ``raw`` was written with, when it is a compact record of this set."""
        codec = self._codecs.get(raw[:HEADER_BYTES])
        return codec.schema if codec is not None else None

    def decode(self, raw: bytes) -> dict[str, Any]:
        """One record of this set as a dict (compact records by their schema, else JSON).

        Raises ``ValueError`` (:class:`~features.record_codec.RecordDecodeError` or
        ``orjson.JSONDecodeError``) for a record this set cannot decode: a compact record
        of another schema, a JSON record in a compact set, a malformed record.
        """
        if not self.record_schemas:
            return OnlineStore.decode(raw)
        codec = self._codecs.get(raw[:HEADER_BYTES])
        if codec is None:
            raise SchemaMismatchError(
                f"feature record not written with a schema of feature set {self.version}"
            )
        return codec.decode(raw)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "as_of": self.as_of.isoformat(),
                "created_at": self.created_at.astimezone(UTC).isoformat(),
                "customers": self.customers,
                "feature_names": self.feature_names,
                "catalogue_version": self.catalogue_version,
                "record_keys": self.record_keys,
                "moments_version": self.moments_version,
                "record_schemas": [schema.to_json() for schema in self.record_schemas],
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> FeatureSetInfo:
        data = orjson.loads(raw)
        return cls(
            version=data["version"],
            as_of=date.fromisoformat(data["as_of"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            customers=int(data["customers"]),
            feature_names=list(data["feature_names"]),
            catalogue_version=data["catalogue_version"],
            # Absent: written before the hash-tagged layout, keyed by the raw customer id.
            record_keys=data.get("record_keys", CUSTOMER_ID_KEYS),
            moments_version=data.get("moments_version"),
            # Absent: written before compact records; its records are JSON.
            record_schemas=tuple(RecordSchema.from_json(s) for s in data.get("record_schemas", [])),
        )


class OnlineStore:
    """Versioned feature records in Redis (see the module docstring for the key layout)."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        pseudonymise: Callable[[str], str] | None = None,
    ) -> None:
        """``pseudonymise`` turns a customer id into the pseudonym its record is keyed by;
        by default the one of the process settings (``NBO_PSEUDONYM_KEY``)."""
        self.client = client
        self.prefix = prefix
        self.keys = FeatureSetKeys(prefix)
        if pseudonymise is None:
            pseudonymise = pseudonymiser(get_settings())
        self.pseudonymise = pseudonymise

    @classmethod
    def for_settings(cls, client: RedisClient, settings: Settings) -> OnlineStore:
        """The store of ``settings``: their prefix and pseudonym key."""
        return cls(client, settings.feature_prefix, pseudonymiser(settings))

    # --- keys --------------------------------------------------------------------------

    def record_key(self, version: str, customer_id: str, keys: str = PSEUDONYM_KEYS) -> str:
        """The key of ``customer_id``'s record in ``version`` (``keys``: its layout)."""
        if keys == CUSTOMER_ID_KEYS:
            return self.keys.legacy_record(version, customer_id)
        return self.keys.record(version, self.pseudonymise(customer_id))

    # --- reading -----------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        """GET as bytes (the client is built without ``decode_responses``)."""
        return cast(bytes | None, self.client.get(key))

    @staticmethod
    def decode(raw: bytes, info: FeatureSetInfo | None = None) -> dict[str, Any]:
        """A record as a dict: by ``info``'s schemas (``FeatureSetInfo.decode``), or as
        JSON without ``info``. Raises ``ValueError`` for a record that cannot be decoded."""
        if info is not None:
            return info.decode(raw)
        record = orjson.loads(raw)
        if not isinstance(record, dict):
            raise RecordDecodeError("feature record is not a JSON object")
        return record

    def current_version(self) -> str | None:
        raw = self._get(self.keys.current)
        return raw.decode() if raw is not None else None

    def info(self, version: str) -> FeatureSetInfo | None:
        raw = self._get(self.keys.meta(version))
        return FeatureSetInfo.from_json(raw) if raw is not None else None

    def current(self) -> FeatureSetInfo | None:
        """The live feature set, or None when nothing has been published."""
        version = self.current_version()
        return self.info(version) if version is not None else None

    def read(self, version: str, customer_id: str) -> dict[str, Any] | None:
        """One record (tools; the service reads with ``service.infra.feature_fetch``)."""
        info = self.info(version)
        keys = info.record_keys if info is not None else PSEUDONYM_KEYS
        raw = self._get(self.record_key(version, customer_id, keys))
        return self.decode(raw, info) if raw is not None else None

    def versions(self) -> list[str]:
        """Published versions, newest first."""
        members: list[bytes] = cast(list[bytes], self.client.zrevrange(self.keys.versions, 0, -1))
        return [v.decode() for v in members]

    # --- writing -----------------------------------------------------------------------

    def write_records(
        self,
        version: str,
        records: Iterable[tuple[str, dict[str, Any]]],
        batch_size: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write records under ``version`` in pipelined batches; return how many were written.

        ``progress`` gets the running total after every batch. The version stays invisible
        until :meth:`publish`.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        written = 0
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for customer_id, record in records:
            pipe.set(self.record_key(version, customer_id), orjson.dumps(record))
            pending += 1
            if pending == batch_size:
                pipe.execute()
                written += pending
                pending = 0
                if progress is not None:
                    progress(written)
        if pending:
            pipe.execute()
            written += pending
            if progress is not None:
                progress(written)
        return written

    def write_frame(
        self,
        version: str,
        frame: pd.DataFrame,
        progress: Callable[[int], None] | None = None,
        *,
        schema: RecordSchema | None = None,
        batch_size: int = 5000,
    ) -> RecordSchema:
        """Write every row of ``frame`` (indexed by customer id) as a compact record under
        ``version``; return the schema they were written with.

        ``schema``: reused when every value of ``frame`` fits it (e.g. the schema of an
        earlier partition of the same set), else a schema is derived from ``frame``; the
        caller records every schema returned in the set's ``record_schemas``.
        The frame is encoded column-wise ``ENCODE_ROWS`` customers at a time and written in
        batches of ``batch_size`` records; ``progress`` gets the running total after every
        batch. The version stays invisible until :meth:`publish`.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        chosen = schema_for(frame, schema)
        rows = max(batch_size, ENCODE_ROWS // batch_size * batch_size)
        written = 0
        # Every key is head + pseudonym + tail (``FeatureSetKeys.record``), joined here
        # without a call per customer beyond the pseudonym itself.
        head, tail = self.keys.record(version, "\0").split("\0")
        pseudonymise = self.pseudonymise
        for customer_ids, records in encode_chunks(chosen, frame, rows):
            keys = [head + pseudonymise(c) + tail for c in customer_ids.astype(str)]
            for start in range(0, len(keys), batch_size):
                end = start + batch_size
                self._set_many(keys[start:end], records[start:end])
                written += len(keys[start:end])
                if progress is not None:
                    progress(written)
        return chosen

    def _set_many(self, keys: list[str], values: list[bytes]) -> None:
        """SET every key to its value in one round trip: pipelined ``MSET`` s, or ``SET`` s
        on a cluster (an ``MSET`` there must stay within one slot)."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            pipe = self.client.pipeline(transaction=False)
            for key, value in zip(keys, values, strict=True):
                pipe.set(key, value)
            pipe.execute()
            return
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(keys), MSET_RECORDS):
            end = start + MSET_RECORDS
            pairs: list[str | bytes] = [b""] * (2 * len(keys[start:end]))
            pairs[0::2] = keys[start:end]
            pairs[1::2] = values[start:end]
            pipe.execute_command("MSET", *pairs)
        pipe.execute()

    def publish(self, info: FeatureSetInfo) -> None:
        """Write the version's metadata, list it, then switch ``current`` to it.

        The pointer switch is last and on its own: until it happens readers keep the
        previous version; after it they get the complete new one.
        """
        created = info.created_at.astimezone(UTC).timestamp()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.meta(info.version), info.to_json())
        pipe.zadd(self.keys.versions, {info.version: created})
        pipe.execute()
        self.client.set(self.keys.current, info.version)
        self.client.zrem(self.keys.pending, info.version)

    # --- one writer, and no orphan versions ----------------------------------------------

    def writer_lock(self, seconds: float = WRITER_LOCK_SECONDS) -> redis.lock.Lock:
        """The lock a materialization holds while it writes under this prefix (redis-py's
        ``Lock``: a key with a token and a TTL of ``seconds``, which the holder renews with
        ``reacquire()``; a crashed writer's lock expires by itself)."""
        return cast(redis.lock.Lock, self.client.lock(self.keys.writer_lock, timeout=seconds))

    def begin(self, version: str, started: datetime) -> None:
        """Record ``version`` as being written: until :meth:`publish` or :meth:`abort`
        removes it, :meth:`sweep_abandoned` of a later run deletes it."""
        self.client.zadd(self.keys.pending, {version: started.timestamp()})

    def sweep_abandoned(self) -> list[str]:
        """Delete every version a writer began and neither published nor aborted (its job
        died, or Redis failed during its abort); return those deleted. Call it only while
        holding :meth:`writer_lock`, so that no live writer's version is swept."""
        pending = [
            v.decode() for v in cast(list[bytes], self.client.zrange(self.keys.pending, 0, -1))
        ]
        current = self.current_version()
        published = set(self.versions())
        swept = []
        for version in pending:
            if version != current and version not in published:
                removed = self.delete_version(version)
                log.warning("deleted abandoned feature set %s (%d keys)", version, removed)
                swept.append(version)
            self.client.zrem(self.keys.pending, version)
        return swept

    # --- deleting ----------------------------------------------------------------------

    def delete_version(self, version: str) -> int:
        """Delete every key of ``version`` (never the current one); return keys removed."""
        if version == self.current_version():
            raise ValueError(f"refusing to delete feature set {version}: it is current")
        self.client.zrem(self.keys.versions, version)
        removed = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(
            match=self.keys.version_pattern(version), count=DELETE_BATCH
        ):
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                removed += int(self.client.unlink(*batch))
                batch = []
        if batch:
            removed += int(self.client.unlink(*batch))
        return removed

    def prune(self, keep: int) -> list[str]:
        """Delete published versions beyond the newest ``keep`` (never the current one)."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        current = self.current_version()
        doomed = [v for v in self.versions()[keep:] if v != current]
        for version in doomed:
            removed = self.delete_version(version)
            log.info("pruned feature set %s (%d keys)", version, removed)
        return doomed

    def abort(self, version: str) -> int:
        """Delete a version that failed half-way; a no-op for a version with no keys."""
        removed = self.delete_version(version)
        self.client.zrem(self.keys.pending, version)
        log.warning("aborted feature set %s (%d keys deleted)", version, removed)
        return removed
