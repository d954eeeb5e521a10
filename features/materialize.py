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

A partition's work is one function, :func:`materialize_partition` (read, compute, encode,
write), which both engines call (``core/engines.py``): the local engine in this process's
loop, one partition after another; the Spark engine as one Spark task per partition, each
writing from its executor straight to Redis and returning its counts and record schema.
The driver's part is the same for both: lock, sweep, ``begin``, then publish only when
every partition succeeded, or abort.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

import redis
import redis.lock

from core.catalogue import Catalogue
from core.engines import SparkEngine
from core.moments import MomentsConfig, default_moments
from core.redis_server import connect, resolve_redis_url
from core.settings import Settings
from core.tables import Tables
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.pointintime import compute_features
from features.record_schema import RecordSchema

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
LOCK_RENEW_SECONDS = 60.0
"""How often the driver renews the writer lock while a Spark job runs."""


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
    spark: SparkEngine | None = None,
    connect_store: StoreFactory | None = None,
) -> FeatureSetInfo:
    """Compute features as of ``as_of`` one partition at a time, write them as one new
    version, publish it after the last partition, prune.

    ``read(k)`` returns partition ``k``'s tables (``0 <= k < partitions``); only one is
    held at a time. ``keep_versions`` counts the new version; keep at least 2 in
    production, because a service may go on reading the previous version until it re-reads
    the pointer. ``moments``: the moment rules (default: the shipped ``core/moments.yaml``);
    their version is recorded in the set's meta.
    ``spark``: run :func:`materialize_partition` of every partition as a Spark task
    (``core.engines``) instead of in this loop; each task writes through its own store from
    ``connect_store()`` (required then; see :func:`store_connector`), and ``read`` and
    ``connect_store`` are pickled to the executors. ``progress`` and ``on_partition`` are
    not called then (the partitions run at once, on other machines).
    Raises ``ValueError`` when ``as_of`` precedes the data or no customer qualifies; any
    error in any partition deletes what the run wrote and is raised again
    (``core.engines.PartitionJobError`` on Spark).
    """
    if keep_versions < 1:
        raise ValueError("keep_versions must be at least 1")
    if partitions < 1:
        raise ValueError("the number of partitions must be at least 1")
    if spark is not None and connect_store is None:
        raise ValueError("materializing on Spark needs connect_store (the executors' store)")
    moments = moments or default_moments()
    with _writer_lock(store) as lock:
        # delete what an earlier run left half-written (its job died, or Redis failed
        # during its abort) before writing
        for abandoned in store.sweep_abandoned():
            log.warning("deleted feature set %s, left half-written by an earlier run", abandoned)
        created_at = datetime.now(UTC)
        version = make_version(as_of, created_at)
        job = PartitionJob(version, as_of, catalogue, moments, batch_size)
        try:
            store.begin(version, created_at)
            if spark is None:
                written = _run_here(job, partitions, read, store, lock, progress, on_partition)
            else:
                assert connect_store is not None
                task = _SparkPartitionTask(job, read, connect_store)
                written = _run_on_spark(spark, task, partitions, lock)
            info = _feature_set(job, created_at, written)
            store.publish(info)
        except BaseException:
            # On Spark a task the cancel missed could still write after the delete: the
            # version then stays listed as pending, and the next run's sweep deletes it.
            _abort_quietly(store, version, keep_pending=spark is not None)
            raise
        log.info(
            "published feature set %s (%d customers, %d partitions%s)",
            info.version,
            info.customers,
            partitions,
            ", on Spark" if spark is not None else "",
        )
        try:
            store.prune(keep_versions)
        except redis.RedisError:
            # The new set is live and complete; old versions are pruned by the next run.
            log.exception("feature set %s published, but pruning old versions failed", info.version)
        return info


@dataclass(frozen=True)
class PartitionJob:
    """What every partition of one materialization shares (pickled to Spark tasks)."""

    version: str
    as_of: date
    catalogue: Catalogue
    moments: MomentsConfig
    batch_size: int


@dataclass(frozen=True)
class PartitionWritten:
    """What one partition wrote: the driver's whole view of a (possibly remote) task."""

    partition: int
    customers: int  # records written (every customer of the partition, left ones included)
    active: int  # of them, customers still with the bank at as_of
    columns: tuple[str, ...]  # the features computed, in order
    schema: RecordSchema | None  # the schema its records were written with; None: no records


def materialize_partition(
    k: int,
    read: ReadPartition,
    store: OnlineStore,
    job: PartitionJob,
    *,
    schema: RecordSchema | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PartitionWritten:
    """Partition ``k``'s work, the same on both engines: read its tables, compute their
    features as of ``job.as_of`` and write them under ``job.version`` (not published).

    Idempotent: a rerun of the same partition (a Spark task retry) writes the same keys
    with the same records. ``schema``: reused when the values fit it (the schema of an
    earlier partition), else the store derives one. ``progress`` gets ``(records written,
    records of the partition)`` after each batch.
    """
    frame = compute_features(read(k), job.as_of, job.catalogue, job.moments)
    columns = tuple(str(c) for c in frame.columns)
    if frame.empty:
        return PartitionWritten(k, 0, 0, columns, None)
    size = len(frame)
    active = int((~frame["departed"].astype(bool)).sum())
    report = (lambda done: progress(done, size)) if progress is not None else None
    chosen = store.write_frame(job.version, frame, report, schema=schema, batch_size=job.batch_size)
    return PartitionWritten(k, size, active, columns, chosen)


def _run_here(
    job: PartitionJob,
    partitions: int,
    read: ReadPartition,
    store: OnlineStore,
    lock: redis.lock.Lock,
    progress: Progress | None,
    on_partition: PartitionProgress | None,
) -> list[PartitionWritten]:
    """The local engine: every partition in turn in this process, one in memory at a time;
    each partition reuses the newest schema when its values fit it."""
    written: list[PartitionWritten] = []
    before = 0
    for k in range(partitions):
        lock.reacquire()  # renews the lock's TTL: this partition may take a while
        if on_partition is not None:
            on_partition(k, partitions)
        latest = next((w.schema for w in reversed(written) if w.schema is not None), None)
        report = _shifted(progress, before)
        written.append(materialize_partition(k, read, store, job, schema=latest, progress=report))
        _same_features(written[-1], written[0])  # fail before the next partition
        before += written[-1].customers
    return written


def _same_features(part: PartitionWritten, first: PartitionWritten) -> None:
    if part.columns != first.columns:
        raise RuntimeError(f"partition {part.partition} computed other features than partition 0")


def _shifted(progress: Progress | None, before: int) -> Callable[[int, int], None] | None:
    """A partition's ``(done, size)`` as the run's ``(before + done, before + size)``."""
    if progress is None:
        return None
    return lambda done, size: progress(before + done, before + size)


def _feature_set(
    job: PartitionJob, created_at: datetime, written: list[PartitionWritten]
) -> FeatureSetInfo:
    """The set's metadata from every partition's result; refuses partitions that computed
    other features, and a set without a single customer of the bank."""
    columns = written[0].columns if written else ()
    for part in written:
        _same_features(part, written[0])
    known = sum(w.customers for w in written)
    if sum(w.active for w in written) == 0:
        gone = f" (only {known} who had left)" if known else ""
        raise ValueError(
            f"no customers of the bank at {job.as_of:%Y-%m-%d}{gone}: nothing to materialize"
        )
    schemas: list[RecordSchema] = []  # every schema a partition's records were written with
    for part in written:
        if part.schema is not None and part.schema not in schemas:
            schemas.append(part.schema)
    return FeatureSetInfo(
        version=job.version,
        as_of=job.as_of,
        created_at=created_at,
        customers=known,
        feature_names=list(columns),
        catalogue_version=job.catalogue.version,
        moments_version=job.moments.version,
        record_schemas=tuple(schemas),
    )


StoreFactory = Callable[[], OnlineStore]
"""Builds the online store a Spark task writes through (runs on the executor)."""


def store_connector(settings: Settings) -> StoreFactory:
    """A picklable factory of the store of ``settings`` for the executors: the Redis URL
    is resolved here on the driver (an embedded Redis is started here, never on an
    executor), so every executor writes to the Redis (or Redis Cluster) the driver uses.
    The executors get these settings whole, pseudonym key included, in the task."""
    resolved = settings.model_copy(update={"redis_url": resolve_redis_url(settings)})
    return functools.partial(_connect_store, resolved)


def _connect_store(settings: Settings) -> OnlineStore:
    return OnlineStore.for_settings(connect(settings), settings)


@dataclass(frozen=True)
class _SparkPartitionTask:
    """The Spark task of partition ``k``: its own store connection, then
    :func:`materialize_partition` without a schema hint (the partitions run at once)."""

    job: PartitionJob
    read: ReadPartition
    connect_store: StoreFactory

    def __call__(self, k: int) -> PartitionWritten:
        store = self.connect_store()
        try:
            return materialize_partition(k, self.read, store, self.job)
        finally:
            store.client.close()


def _run_on_spark(
    spark: SparkEngine,
    task: _SparkPartitionTask,
    partitions: int,
    lock: redis.lock.Lock,
) -> list[PartitionWritten]:
    """The Spark engine: the job runs from a helper thread while this one (the lock's
    owner: redis-py keeps the lock's token per thread) renews the writer lock every
    :data:`LOCK_RENEW_SECONDS`. A lock lost to another run (its TTL ran out) cancels the
    job."""
    description = f"materialize features as of {task.job.as_of:%Y-%m-%d}"
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbo-spark") as pool:
        job = pool.submit(spark.run, task, partitions, description)
        while True:
            try:
                return job.result(timeout=LOCK_RENEW_SECONDS)
            except concurrent.futures.TimeoutError:
                pass
            try:
                lock.reacquire()
            except redis.exceptions.LockError:
                spark.cancel()
                raise
            except redis.RedisError:
                log.warning("could not renew the materialization lock; trying again")


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


def _abort_quietly(store: OnlineStore, version: str, *, keep_pending: bool = False) -> None:
    """Delete the partial version without hiding the error that caused the abort.

    If the pointer did switch (publish failed after the switch was applied), the version
    is complete and current, and ``abort`` refuses to delete it. ``keep_pending``: delete
    its records but leave it listed as pending, for the next run's sweep.
    """
    try:
        if keep_pending:
            removed = store.delete_version(version)
            log.warning("aborted feature set %s (%d keys deleted)", version, removed)
        else:
            store.abort(version)
    except Exception:
        log.exception("could not delete partial feature set %s", version)
