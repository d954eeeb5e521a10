"""The local engine against Spark (local mode) on the same bank, in one run: the overhead.

Generates a partitioned synthetic bank of ``--customers`` into ``--home`` (once, with
``nbo data generate`` in a child process, ``NBO_PARTITION_CUSTOMERS=--partition-customers``),
starts the embedded Redis of that home on ``--port``, fits a churn model on a small bank
of its own (the model only needs the features), then times, alternating the engines:

* materialization (``materialize_partitions``, every feature, written to the Redis and
  published), the local engine's loop and the Spark engine's tasks;
* the churn retention list (``retention_list_partitions``), both engines.

Checks the Spark results equal the local ones (same customers, same scores) and prints
wall times, customers/s, the ratio Spark / local and the load average beside them. The
Spark session's start (the JVM) is timed on its own and not in the jobs' times; the first
Spark job pays the Python workers' start and imports. A script that prints figures, not a
test: on a shared machine compare the ratios of one run, never an absolute figure.

Example:
    python -m loadtests.bench_engines --customers 100000 --home /tmp/spark-bench-100k \
        --port 17450 --spark-master 'local[2]'
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd

from core.catalogue import load_catalogue
from core.embedded_redis import start_embedded_redis, stop_embedded_redis
from core.engines import SparkEngine
from core.redis_server import make_client
from core.settings import PACKAGE_DIR, Settings
from core.tables import latest_snapshot, read_partition, table_layout
from features.materialize import materialize_partitions, store_connector
from features.online_store import OnlineStore
from features.synthetic import generate_bank
from training.batch_scoring import retention_list_partitions
from training.churn import ChurnConfig, fit_churn
from training.datasets import churn_split

T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partition-customers", type=int, default=25_000)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, default=17450, help="the embedded Redis's port")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--rounds", type=int, default=1, help="local/Spark pairs per job")
    args = parser.parse_args()
    data = args.home / "data"
    if not (data / "partitions.json").exists():
        print(f"generating {args.customers:,} customers x {args.months} months into {data}")
        env = {
            **os.environ,
            "NBO_HOME": str(args.home),
            "NBO_PARTITION_CUSTOMERS": str(args.partition_customers),
        }
        generate = [sys.executable, "-m", "cli.main", "data", "generate"]
        generate += ["--customers", str(args.customers), "--months", str(args.months)]
        subprocess.run([*generate, "--seed", str(args.seed)], env=env, check=True)
    url = start_embedded_redis(args.port, args.home / "redis", persist=False)
    try:
        run(args, data, url)
    finally:
        stop_embedded_redis(args.port, args.home / "redis")


def run(args: argparse.Namespace, data: Path, url: str) -> None:
    settings = Settings(
        home=args.home, redis_url=url, feature_prefix="bench:fs", redis_timeout_seconds=30
    )
    store = OnlineStore.for_settings(make_client(url, socket_timeout=30), settings)
    catalogue = load_catalogue(PACKAGE_DIR / "catalogue.yaml")
    partitions = table_layout(data).partitions
    latest = latest_snapshot(data)
    assert latest is not None
    as_of = latest.date()
    read = functools.partial(read_partition, data)
    print(f"{partitions} partitions, as of {as_of}; load {load()}")
    small = generate_bank(5000, args.months, args.seed, catalogue, as_of)
    model = fit_churn(churn_split(small, catalogue, 3).train, 3, ChurnConfig())

    started = time.perf_counter()
    spark = SparkEngine(args.spark_master, "nbo-bench")
    master = spark.session.sparkContext.master
    print(f"Spark session on {master}: started in {time.perf_counter() - started:.1f} s")

    def materialize(engine: SparkEngine | None) -> int:
        info = materialize_partitions(
            partitions,
            read,
            as_of,
            catalogue,
            store,
            keep_versions=2,
            spark=engine,
            connect_store=store_connector(settings) if engine is not None else None,
        )
        return info.customers

    def score(engine: SparkEngine | None) -> pd.DataFrame:
        return retention_list_partitions(
            model, partitions, read, catalogue, settings, as_of, spark=engine
        )

    try:
        for _ in range(args.rounds):
            local_n, local_s = timed(lambda: materialize(None))
            spark_n, spark_s = timed(lambda: materialize(spark))
            assert local_n == spark_n
            report("materialize", local_n, local_s, spark_s)
            local_list, local_s = timed(lambda: score(None))
            spark_list, spark_s = timed(lambda: score(spark))
            pd.testing.assert_frame_equal(spark_list, local_list)
            report("churn list", len(local_list), local_s, spark_s)
    finally:
        spark.close()
        for version in store.versions():
            if version != store.current_version():
                store.delete_version(version)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def report(step: str, customers: int, local_s: float, spark_s: float) -> None:
    print(
        f"{step:12} {customers:,} customers: local {local_s:6.1f} s "
        f"({customers / local_s:,.0f}/s), Spark {spark_s:6.1f} s ({customers / spark_s:,.0f}/s), "
        f"Spark / local {spark_s / local_s:.2f}; results equal; load {load()}",
        flush=True,
    )


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
