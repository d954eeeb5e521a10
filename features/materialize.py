"""Materialization: compute a feature set as of a date and publish it to the online store.

Partition by partition (``core/partitions.py``): each partition's customers are read,
their features computed and written under the new version before the next partition is
read, so the job's memory follows the partition size, not the bank's. All or nothing:
the ``current`` pointer switches only after the last partition is written, and any
failure before the switch (in any partition) deletes the partial version, so the service
keeps serving the previous set. When even that delete fails (Redis went away mid-way) or the
job is killed, the version stays listed as pending and the next run deletes it before it
writes. One run at a time per feature prefix: a run holds a writer lock in Redis (with a
TTL, so a killed run's lock expires) and another run meanwhile fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pandas as pd
import redis
import redis.lock

from core.catalogue import Catalogue
from core.moments import MomentsConfig, default_moments
from core.tables import Tables
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.pointintime import compute_features
from features.record_codec import RecordSchema

log = logging.getLogger(__name__)


class WriterBusyError(ValueError):
    """Another materialization holds the writer lock of the same feature prefix."""


Progress = Callable[[int, int], None]
"""Called after each written batch with ``(records written, records known so far)``: the
second figure grows partition by partition and is the total once the last one is read."""
PartitionProgress = Callable[[int, int], None]
"""Called when a partition starts, with ``(partition, partitions)``."""
ReadPartition = Callable[[int], Tables]
"""Reads one partition's customers with all their rows (``core.tables.read_partition``)."""


def materialize(
    tables: Tables,
    as_of: date,
    catalogue: Catalogue,
    store: OnlineStore,
    *,
    batch_size: int = 5000,
    keep_versions: int = 2,
    progress: Progress | None = None,
    moments: MomentsConfig | None = None,
) -> FeatureSetInfo:
    """Materialize tables held in memory: :func:`materialize_partitions` with one partition."""
    return materialize_partitions(
        1,
        lambda _: tables,
        as_of,
        catalogue,
        store,
        batch_size=batch_size,
        keep_versions=keep_versions,
        progress=progress,
        moments=moments,
    )


def materialize_partitions(
    partitions: int,
    read: ReadPartition,
    as_of: date,
    catalogue: Catalogue,
    store: OnlineStore,
    *,
    batch_size: int = 5000,
    keep_versions: int = 2,
    progress: Progress | None = None,
    on_partition: PartitionProgress | None = None,
    moments: MomentsConfig | None = None,
) -> FeatureSetInfo:
    """Compute features as of ``as_of`` one partition at a time, write them as one new
    version, publish it after the last partition, prune.

    ``read(k)`` returns partition ``k``'s tables (``0 <= k < partitions``); only one is
    held at a time. ``keep_versions`` counts the new version; keep at least 2 in
    production, because a service may go on reading the previous version until it re-reads
    the pointer. ``moments``: the moment rules (default: the shipped ``core/moments.yaml``);
    their version is recorded in the set's meta.
    Raises ``ValueError`` when ``as_of`` precedes the data or no customer qualifies; any
    error in any partition deletes what the run wrote and is raised again.
    """
    if keep_versions < 1:
        raise ValueError("keep_versions must be at least 1")
    if partitions < 1:
        raise ValueError("the number of partitions must be at least 1")
    moments = moments or default_moments()
    with _writer_lock(store) as lock:
        # delete what an earlier run left half-written (its job died, or Redis failed
        # during its abort) before writing
        for abandoned in store.sweep_abandoned():
            log.warning("deleted feature set %s, left half-written by an earlier run", abandoned)
        created_at = datetime.now(UTC)
        version = make_version(as_of, created_at)
        columns: list[str] | None = None
        known = written = active = 0
        schemas: list[RecordSchema] = []  # every schema a partition's records were written with
        try:
            store.begin(version, created_at)
            for k in range(partitions):
                lock.reacquire()  # renews the lock's TTL: this partition may take a while
                if on_partition is not None:
                    on_partition(k, partitions)
                frame = compute_features(read(k), as_of, catalogue, moments)
                if columns is None:
                    columns = [str(c) for c in frame.columns]
                elif [str(c) for c in frame.columns] != columns:
                    raise RuntimeError(f"partition {k} computed other features than partition 0")
                if frame.empty:
                    continue
                known += len(frame)
                active += int((~frame["departed"].astype(bool)).sum())
                schema = _write_partition(
                    store, version, frame, batch_size, written, known, progress, schemas
                )
                if schema not in schemas:
                    schemas.append(schema)
                written += len(frame)
                del frame  # the next partition is read only after this one is released
            if active == 0:
                gone = f" (only {known} who had left)" if known else ""
                raise ValueError(
                    f"no customers of the bank at {as_of:%Y-%m-%d}{gone}: nothing to materialize"
                )
            info = FeatureSetInfo(
                version=version,
                as_of=as_of,
                created_at=created_at,
                customers=known,
                feature_names=columns or [],
                catalogue_version=catalogue.version,
                moments_version=moments.version,
                record_schemas=tuple(schemas),
            )
            store.publish(info)
        except BaseException:
            _abort_quietly(store, version)
            raise
        log.info(
            "published feature set %s (%d customers, %d partitions)",
            info.version,
            info.customers,
            partitions,
        )
        try:
            store.prune(keep_versions)
        except redis.RedisError:
            # The new set is live and complete; old versions are pruned by the next run.
            log.exception("feature set %s published, but pruning old versions failed", info.version)
        return info


def _write_partition(
    store: OnlineStore,
    version: str,
    frame: pd.DataFrame,
    batch_size: int,
    before: int,
    known: int,
    progress: Progress | None,
    schemas: list[RecordSchema],
) -> RecordSchema:
    """Write one partition's records under ``version``; the one call into the store's
    write API. The newest schema is reused when this partition's values fit it (most
    partitions), else the store derives one. Returns the schema the records were written
    with."""
    report = (lambda done: progress(before + done, known)) if progress is not None else None
    previous = schemas[-1] if schemas else None
    return store.write_frame(version, frame, report, schema=previous, batch_size=batch_size)


@contextmanager
def _writer_lock(store: OnlineStore) -> Iterator[redis.lock.Lock]:
    """Hold the store's writer lock for the block, or fail at once if another run holds it.
    Released at the end; if Redis is gone by then, its TTL ends it."""
    lock = store.writer_lock()
    if not lock.acquire(blocking=False):
        raise WriterBusyError(
            f"another materialization is writing feature sets under {store.prefix!r} "
            f"(lock {store.keys.writer_lock!r}); run one at a time"
        )
    try:
        yield lock
    finally:
        try:
            lock.release()
        except (redis.exceptions.LockError, redis.RedisError):
            log.warning("could not release the materialization lock; it expires by itself")


def _abort_quietly(store: OnlineStore, version: str) -> None:
    """Delete the partial version without hiding the error that caused the abort.

    If the pointer did switch (publish failed after the switch was applied), the version
    is complete and current, and ``abort`` refuses to delete it.
    """
    try:
        store.abort(version)
    except Exception:
        log.exception("could not delete partial feature set %s", version)
