"""Materialization on Apache Spark (local mode): the same partition function as the local
engine, run as one Spark task per partition writing straight to a real Redis."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.lock
from redis.cluster import RedisCluster
from typer.testing import CliRunner

from cli.features import app
from core.catalogue import Catalogue
from core.engines import PartitionJobError, SparkEngine
from core.redis_server import connect
from core.settings import Settings, get_settings
from core.tables import Tables, contract_products, read_partition, write_tables
from features.materialize import materialize_partitions, store_connector
from features.online_store import FeatureSetInfo, OnlineStore
from features.pointintime import compute_features
from tests.support.redis_cluster import cluster_or_skip
from tests.support.small_banks import AS_OF, PARTITIONS
from tests.support.spark import pickle_by_value


def _on_spark(
    read: Callable[[int], Tables],
    catalogue: Catalogue,
    store: OnlineStore,
    spark: SparkEngine,
    settings: Settings,
) -> FeatureSetInfo:
    """Materialize the :data:`PARTITIONS` partitions ``read`` gives on Spark, each task
    writing through its own connection to ``settings``' Redis."""
    return materialize_partitions(
        PARTITIONS,
        read,
        AS_OF,
        catalogue,
        store,
        spark=spark,
        connect_store=store_connector(settings),
    )


@pytest.fixture
def spark(spark_session: Any) -> SparkEngine:
    pickle_by_value(sys.modules[__name__])
    return SparkEngine(session=spark_session)


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> OnlineStore:
    return OnlineStore.for_settings(redis_client, settings)


class FlakyStore(OnlineStore):
    """Fails partition 1's first task attempt after its records are written (a connection
    lost before the task could report): Spark retries the task, which writes them again."""

    def write_frame(self, version: str, frame: Any, *args: Any, **kwargs: Any) -> Any:
        from pyspark import TaskContext

        schema = super().write_frame(version, frame, *args, **kwargs)
        task = TaskContext.get()
        if task is not None and task.partitionId() == 1 and task.attemptNumber() == 0:
            raise redis.ConnectionError("connection lost after writing partition 1")
        return schema


def _flaky_store(settings: Settings) -> OnlineStore:
    return FlakyStore.for_settings(connect(settings), settings)


class CorruptPartition(OSError):
    pass


def _read_failing_partition_2(partitioned_dir: Path, k: int) -> Tables:
    if k == 2:
        raise CorruptPartition(f"{partitioned_dir.name}/holdings/part-00002.parquet is corrupt")
    return read_partition(partitioned_dir, k)


def _version_keys(store: OnlineStore, version: str) -> list[bytes]:
    return list(store.client.scan_iter(match=f"{store.prefix}:v:{version}:*", count=1000))


def test_spark_gives_the_records_of_the_local_engine_and_a_retried_task_counts_once(
    partitioned_bank: Tables,
    partitioned_dir: Path,
    catalogue: Catalogue,
    settings: Settings,
    store: OnlineStore,
    spark: SparkEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renewed: list[int] = []
    renew = redis.lock.Lock.reacquire

    def counted(lock: redis.lock.Lock) -> bool:
        renewed.append(1)
        return renew(lock)

    monkeypatch.setattr("features.materialize.LOCK_RENEW_SECONDS", 0.2)  # renewed during the job
    monkeypatch.setattr(redis.lock.Lock, "reacquire", counted)
    read = functools.partial(read_partition, partitioned_dir)
    local = materialize_partitions(PARTITIONS, read, AS_OF, catalogue, store, batch_size=64)
    on_spark = materialize_partitions(
        PARTITIONS,
        read,
        AS_OF,
        catalogue,
        store,
        batch_size=64,
        spark=spark,
        connect_store=functools.partial(_flaky_store, settings),
    )
    assert store.current() == on_spark != local
    assert len(renewed) > PARTITIONS  # the local loop's one per partition, and the driver's
    assert on_spark.customers == local.customers  # partition 1 ran twice, counted once
    assert on_spark.feature_names == local.feature_names
    assert len(_version_keys(store, on_spark.version)) == on_spark.customers + 1  # + meta
    customers = compute_features(partitioned_bank, AS_OF, catalogue).index
    assert len(customers) == local.customers
    for customer_id in customers:  # every record decoded, with its own set's schemas
        record = store.read(on_spark.version, str(customer_id))
        assert record is not None and record == store.read(local.version, str(customer_id))


def test_a_failing_partition_fails_the_spark_job_and_leaves_no_partial_version(
    partitioned_dir: Path,
    catalogue: Catalogue,
    settings: Settings,
    store: OnlineStore,
    spark: SparkEngine,
) -> None:
    read = functools.partial(read_partition, partitioned_dir)
    old = materialize_partitions(PARTITIONS, read, AS_OF, catalogue, store)
    with pytest.raises(PartitionJobError, match=r"partition 2: CorruptPartition: .*part-00002"):
        _on_spark(
            functools.partial(_read_failing_partition_2, partitioned_dir),
            catalogue,
            store,
            spark,
            settings,
        )
    assert store.current() == old and store.versions() == [old.version]
    keys = list(store.client.scan_iter(match=f"{store.prefix}:v:*", count=1000))
    assert keys and all(k.decode().startswith(f"{store.prefix}:v:{old.version}:") for k in keys)
    # A rerun succeeds (and sweeps the failed version from the pending list).
    rerun = _on_spark(read, catalogue, store, spark, settings)
    assert store.current() == rerun and rerun.customers == old.customers
    assert store.client.zcard(store.keys.pending) == 0


def test_the_cli_materializes_on_spark(
    partitioned_bank: Tables,
    catalogue: Catalogue,
    settings: Settings,
    store: OnlineStore,
    spark: SparkEngine,
) -> None:
    ids = [p.id for p in catalogue.holdable]
    write_tables(
        partitioned_bank, settings.data_dir, ids, contract_products(catalogue), partitions=2
    )
    env = {
        "NBO_HOME": str(settings.home),
        "NBO_REDIS_URL": settings.redis_url or "",
        "NBO_FEATURE_PREFIX": settings.feature_prefix,
        "NBO_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
    }
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["materialize", "--engine", "spark"], env=env)
    assert result.exit_code == 0, result.output
    info = store.current()
    assert info is not None and info.customers == len(
        compute_features(partitioned_bank, AS_OF, catalogue)
    )
    assert spark.session.sparkContext._jsc is not None  # the shared session was joined, not stopped


def test_without_pyspark_the_spark_engine_exits_2_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    env = {"NBO_HOME": str(settings.home), "NBO_REDIS_URL": settings.redis_url or ""}
    result = CliRunner().invoke(app, ["materialize", "--engine", "spark"], env=env)
    assert result.exit_code == 2
    assert "pip install 'nbo[spark]'" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(app, ["materialize", "--engine", "dask"], env=env)
    assert bad.exit_code == 2 and "'dask' is not one of local, spark" in bad.output


@pytest.mark.slow  # starts a 3-node Redis Cluster beside the Spark session (~10 s more)
def test_spark_tasks_write_to_a_redis_cluster(
    partitioned_dir: Path,
    catalogue: Catalogue,
    spark: SparkEngine,
    tmp_path: Path,
    settings: Settings,
) -> None:
    cluster = cluster_or_skip(tmp_path / "cluster")
    try:
        on_cluster = settings.model_copy(update={"redis_url": cluster.url})
        client = connect(on_cluster)
        assert isinstance(client, RedisCluster)
        store = OnlineStore.for_settings(client, on_cluster)
        read = functools.partial(read_partition, partitioned_dir)
        local = materialize_partitions(PARTITIONS, read, AS_OF, catalogue, store)
        on_spark = _on_spark(read, catalogue, store, spark, on_cluster)
        assert store.current() == on_spark and on_spark.customers == local.customers
        customers = compute_features(read_partition(partitioned_dir, 1), AS_OF, catalogue).index
        for customer_id in customers:
            record = store.read(on_spark.version, str(customer_id))
            assert record is not None and record == store.read(local.version, str(customer_id))
        client.close()
    finally:
        cluster.stop()
