"""Materialization partition by partition, on a real Redis: same records as one pass, one
partition in memory at a time, and a failure in any partition leaves no trace."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cli.features import app
from core.catalogue import Catalogue
from core.settings import Settings, get_settings
from core.tables import Tables, contract_products, read_partition, write_tables
from features.materialize import WriterBusyError, materialize, materialize_partitions
from features.online_store import OnlineStore
from features.pointintime import compute_features, to_records
from tests.support.small_banks import AS_OF, PARTITIONS


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> OnlineStore:
    return OnlineStore.for_settings(redis_client, settings)


def _version_keys(store: OnlineStore, version: str) -> list[bytes]:
    return list(store.client.scan_iter(match=f"{store.prefix}:v:{version}:*", count=1000))


def test_partitions_give_the_records_of_one_pass(
    partitioned_bank: Tables, partitioned_dir: Path, catalogue: Catalogue, store: OnlineStore
) -> None:
    info = materialize_partitions(
        PARTITIONS,
        lambda k: read_partition(partitioned_dir, k),
        AS_OF,
        catalogue,
        store,
        batch_size=64,
    )
    whole = compute_features(partitioned_bank, AS_OF, catalogue)
    assert info.customers == len(whole) and info.feature_names == list(whole.columns)
    assert store.current() == info
    assert len(_version_keys(store, info.version)) == len(whole) + 1  # records + meta
    for customer_id, record in to_records(whole):
        assert store.read(info.version, customer_id) == record, customer_id


def test_one_partition_is_held_at_a_time(
    partitioned_dir: Path, catalogue: Catalogue, store: OnlineStore
) -> None:
    alive: list[weakref.ref[Tables]] = []
    order: list[int] = []

    def read(k: int) -> Tables:
        gc.collect()
        assert all(ref() is None for ref in alive), "an earlier partition is still in memory"
        order.append(k)
        tables = read_partition(partitioned_dir, k)
        alive.append(weakref.ref(tables))
        return tables

    materialize_partitions(PARTITIONS, read, AS_OF, catalogue, store)
    assert order == [0, 1, 2]


class CorruptPartition(OSError):
    pass


def test_a_partition_that_fails_midway_aborts_the_whole_version(
    partitioned_dir: Path, catalogue: Catalogue, store: OnlineStore
) -> None:
    old = materialize(read_partition(partitioned_dir, 0), AS_OF, catalogue, store)
    written: list[int] = []

    def read(k: int) -> Tables:
        if k == 2:
            raise CorruptPartition(f"partition {k}: holdings/part-00002.parquet is corrupt")
        return read_partition(partitioned_dir, k)

    with pytest.raises(CorruptPartition, match="part-00002"):
        materialize_partitions(
            PARTITIONS,
            read,
            AS_OF,
            catalogue,
            store,
            batch_size=50,
            progress=lambda done, _: written.append(done),
        )
    assert written and written[-1] > 300  # partitions 0 and 1 were written before the failure
    assert store.current() == old and store.versions() == [old.version]
    keys = list(store.client.scan_iter(match=f"{store.prefix}:v:*", count=1000))
    assert all(k.decode().startswith(f"{store.prefix}:v:{old.version}:") for k in keys)

    def explode(done: int, known: int) -> None:
        if done > known - 50 and known > 400:  # the last batch of the second partition
            raise redis.ConnectionError("Redis went away")

    with pytest.raises(redis.ConnectionError):
        materialize_partitions(
            PARTITIONS,
            lambda k: read_partition(partitioned_dir, k),
            AS_OF,
            catalogue,
            store,
            batch_size=50,
            progress=explode,
        )
    assert store.current() == old and store.versions() == [old.version]
    # A rerun succeeds.
    rerun = materialize_partitions(
        PARTITIONS, lambda k: read_partition(partitioned_dir, k), AS_OF, catalogue, store
    )
    assert store.current() == rerun and rerun.customers > old.customers


def test_the_cli_materializes_a_partitioned_folder(
    partitioned_bank: Tables, catalogue: Catalogue, settings: Settings, store: OnlineStore
) -> None:
    ids = [p.id for p in catalogue.holdable]
    write_tables(
        partitioned_bank, settings.data_dir, ids, contract_products(catalogue), partitions=2
    )
    env = {
        "NBO_HOME": str(settings.home),
        "NBO_REDIS_URL": settings.redis_url or "",
        "NBO_FEATURE_PREFIX": settings.feature_prefix,
    }
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["materialize"], env=env)  # as of the latest snapshot
    assert result.exit_code == 0, result.output
    info = store.current()
    assert info is not None and info.as_of == AS_OF
    assert info.customers == len(compute_features(partitioned_bank, AS_OF, catalogue))
    assert f"customers  {info.customers}" in result.output


def test_a_version_left_half_written_is_deleted_by_the_next_run(
    partitioned_bank: Tables, partitioned_dir: Path, catalogue: Catalogue, store: OnlineStore
) -> None:
    """A job killed mid-way (or whose abort failed because Redis went away) leaves its
    records; the next run deletes them before it writes, and they were never visible."""
    old = materialize(read_partition(partitioned_dir, 0), AS_OF, catalogue, store)
    orphan = "20251231-20260101T000000000000Z"
    store.begin(orphan, old.created_at)
    store.write_frame(
        orphan, compute_features(read_partition(partitioned_dir, 1), AS_OF, catalogue)
    )
    assert _version_keys(store, orphan) and store.current() == old

    rerun = materialize_partitions(
        PARTITIONS, lambda k: read_partition(partitioned_dir, k), AS_OF, catalogue, store
    )

    assert _version_keys(store, orphan) == []
    assert store.current() == rerun and store.client.zcard(store.keys.pending) == 0
    assert set(store.versions()) == {rerun.version, old.version}


def test_a_second_run_while_one_writes_fails_at_once_and_writes_nothing(
    partitioned_dir: Path, catalogue: Catalogue, store: OnlineStore
) -> None:
    lock = store.writer_lock()
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(WriterBusyError, match="another materialization"):
            materialize(read_partition(partitioned_dir, 0), AS_OF, catalogue, store)
    finally:
        lock.release()
    assert store.current() is None
    assert list(store.client.scan_iter(match=f"{store.prefix}:v:*", count=1000)) == []
    assert (
        materialize(read_partition(partitioned_dir, 0), AS_OF, catalogue, store) == store.current()
    )
