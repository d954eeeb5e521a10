"""The Redis online store: versioned feature sets behind one ``current`` pointer.

Key layout: ``core.redis_keys.FeatureSetKeys``. A record is keyed by the customer's
pseudonym (``core.pseudonym``) inside the customer's Redis Cluster hash tag, shared with
their contact state, so the request path reads both from one slot in one script. Feature
sets whose metadata has no ``record_keys`` keyed records by the raw customer id; they are
read that way (``FeatureSetInfo.record_keys``), on a single Redis only, until the next
materialization replaces them.

A version is written completely under its own keys and only then made visible by
switching ``current``; readers never see a half-written set. Every write is single-key
(no MULTI, no Lua across keys), so the same code runs on Redis Cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson

from core.pseudonym import pseudonymiser
from core.redis_keys import FeatureSetKeys
from core.redis_server import RedisClient
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

PSEUDONYM_KEYS = "pseudonym"
"""``FeatureSetInfo.record_keys`` of this layout: ``...:c:{<pseudonym>}`` (hash-tagged)."""
CUSTOMER_ID_KEYS = "customer_id"
"""The layout before Redis Cluster support: ``...:c:<raw customer id>`` (read only)."""

DELETE_BATCH = 1000


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
    def decode(raw: bytes) -> dict[str, Any]:
        record = orjson.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("feature record is not a JSON object")
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
        return self.decode(raw) if raw is not None else None

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
        log.warning("aborted feature set %s (%d keys deleted)", version, removed)
        return removed
