"""``nbo features``: materialize point-in-time features into Redis and inspect them."""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import orjson
import redis
import typer
from rich.console import Console
from rich.progress import Progress

from cli.errors import exit_on
from cli.progress import counter
from core.catalogue import CatalogueError, load_catalogue
from core.embedded_redis import RedisUnavailableError
from core.engines import PartitionJobError, SparkEngine, check_engine, spark_engine
from core.moments import load_moments
from core.redis_server import connect
from core.settings import get_settings
from core.tables import TablesMissingError, latest_snapshot, read_partition, table_layout
from features.materialize import materialize_partitions, store_connector
from features.online_store import OnlineStore

app = typer.Typer(no_args_is_help=True)

_EXPECTED_ERRORS = (
    TablesMissingError,
    CatalogueError,
    ValueError,
    redis.RedisError,
    RedisUnavailableError,
    subprocess.CalledProcessError,
    OSError,
)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not a date like 2026-10-31") from None


def _store() -> OnlineStore:
    settings = get_settings()
    return OnlineStore.for_settings(connect(settings), settings)


Callback = Callable[[int, int], None]


def _progress_bar(
    console: Console, day: date
) -> tuple[Progress, Callable[[int, int], None], Callback]:
    """A bar that names the partition being read and computed, then counts records written
    (the total grows as partitions are read)."""
    bar = counter(console)
    task = bar.add_task(f"computing features as of {day:%Y-%m-%d}", total=None)
    where = {"partition": ""}

    def on_partition(k: int, partitions: int) -> None:
        where["partition"] = f"partition {k + 1}/{partitions}: " if partitions > 1 else ""
        bar.update(task, description=f"{where['partition']}reading and computing features")

    def update(written: int, total: int) -> None:
        description = f"{where['partition']}writing to Redis"
        bar.update(task, description=description, completed=written, total=total)

    return bar, update, on_partition


@app.command("materialize")
def materialize_command(
    as_of: str | None = typer.Option(
        None, "--as-of", help="Feature date (YYYY-MM-DD); default: the latest snapshot month."
    ),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Records per pipeline."),
    engine: str = typer.Option(
        "local", "--engine", help="local (partitions in turn here) or spark (one task each)."
    ),
    spark_master: str | None = typer.Option(
        None,
        "--spark-master",
        help="Spark master URL (e.g. local[2], spark://host:7077); default: spark-submit's, "
        "else local[*].",
    ),
) -> None:
    """Compute features as of a date and publish them to Redis as a new version.

    Works through the data folder one partition at a time (NBO_PARTITION_CUSTOMERS bounds
    the memory). The previous version stays current until every partition is written; a
    failure in any partition deletes what the run wrote. With --engine spark each
    partition is a Spark task that writes its records to Redis from the executor
    (needs the nbo\\[spark] extra; docs/operations.md).

    Example: nbo features materialize --as-of 2026-10-31
    """
    settings = get_settings()
    console = Console(stderr=True)
    with exit_on(*_EXPECTED_ERRORS, PartitionJobError):
        choice = check_engine(engine, spark_master)
        day = _parse_date(as_of) if as_of is not None else None
        catalogue = load_catalogue(settings.catalogue_path)
        moments = load_moments(settings.moments_path)
        layout = table_layout(settings.data_dir)
        if day is None:
            latest = latest_snapshot(settings.data_dir)
            if latest is None:
                raise ValueError(f"no holdings snapshots in {settings.data_dir}")
            day = latest.date()
        store = OnlineStore.for_settings(connect(settings), settings)
        store.client.ping()
        started = time.perf_counter()
        bar, update, on_partition = _progress_bar(console, day)
        with spark_engine(choice, "nbo features materialize") as spark, bar:
            if spark is not None:
                bar.update(bar.task_ids[0], description=_on_spark(spark, layout.partitions))
            info = materialize_partitions(
                layout.partitions,
                functools.partial(read_partition, settings.data_dir),
                day,
                catalogue,
                store,
                batch_size=batch_size,
                keep_versions=settings.feature_versions_kept,
                progress=update,
                on_partition=on_partition,
                moments=moments,
                spark=spark,
                connect_store=store_connector(settings) if spark is not None else None,
            )
        elapsed = time.perf_counter() - started
    typer.echo(f"version    {info.version}")
    typer.echo(f"as_of      {info.as_of:%Y-%m-%d}")
    typer.echo(f"customers  {info.customers}")
    typer.echo(f"features   {len(info.feature_names)}")
    typer.echo(
        f"elapsed    {elapsed:.1f} s ({info.customers / max(elapsed, 1e-9):,.0f} customers/s)"
    )


def _on_spark(spark: SparkEngine, partitions: int) -> str:
    return f"{partitions} partition(s) as Spark tasks on {spark.session.sparkContext.master}"


@app.command("status")
def status() -> None:
    """Show the current feature set: version, as_of, age, customers, versions kept.

    Example: nbo features status
    """
    with exit_on(*_EXPECTED_ERRORS):
        store = _store()
        info = store.current()
        versions = store.versions()
    if info is None:
        typer.echo("no feature set published; run `nbo features materialize`", err=True)
        raise typer.Exit(1)
    age = datetime.now(UTC) - info.created_at
    typer.echo(f"version    {info.version}")
    typer.echo(f"as_of      {info.as_of:%Y-%m-%d}")
    typer.echo(
        f"created    {info.created_at:%Y-%m-%d %H:%M:%S} UTC ({_age(age.total_seconds())} ago)"
    )
    typer.echo(f"customers  {info.customers}")
    typer.echo(f"features   {len(info.feature_names)}")
    typer.echo(f"catalogue  {info.catalogue_version}")
    typer.echo(f"moments    {info.moments_version or '-'}")
    typer.echo(f"versions   {len(versions)} kept: {', '.join(versions)}")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


@app.command("show")
def show(customer_id: str = typer.Argument(..., help="Customer id.")) -> None:
    """Print one customer's record from the current feature set as JSON (debugging).

    Example: nbo features show C0000042
    """
    with exit_on(*_EXPECTED_ERRORS):
        store = _store()
        info = store.current()
        record = store.read(info.version, customer_id) if info is not None else None
    if info is None:
        typer.echo("no feature set published; run `nbo features materialize`", err=True)
        raise typer.Exit(1)
    if record is None:
        typer.echo(f"customer not in feature set {info.version}", err=True)
        raise typer.Exit(1)
    typer.echo(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
