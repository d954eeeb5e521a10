"""``nbo score``: batch scoring jobs (the retention campaign list, precomputed scores)."""

from __future__ import annotations

import functools
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import redis
import typer
from mlflow.exceptions import MlflowException
from rich.console import Console

from cli.errors import exit_on
from cli.progress import counter
from core.catalogue import CatalogueError
from core.engines import EngineUnavailableError
from core.tables import TablesMissingError
from registry.client import RegistryError

app = typer.Typer(no_args_is_help=True)


@app.command("churn")
def churn(
    as_of: Annotated[
        datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Features as of this date.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
    alias: Annotated[
        str | None, typer.Option("--alias", help="Model alias (default: the serving alias).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option("--engine", help="local (partitions in turn here) or spark (one task each)."),
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL (e.g. local[2], spark://host:7077); default: "
            "spark-submit's, else local[*].",
        ),
    ] = None,
) -> None:
    """Score every customer's churn risk: probability, band and top reasons, riskiest first.

    Reads the data folder one partition at a time (NBO_PARTITION_CUSTOMERS bounds the
    memory) and computes only the model's input features. The file is written atomically
    (temp file + rename); its format follows the extension. With --engine spark each
    partition is scored in a Spark task and the scores come back to this process (needs
    the nbo\\[spark] extra; docs/operations.md).

    Example: nbo score churn --as-of 2026-10-31 --out var/retention.parquet
    """
    from core.catalogue import load_catalogue  # heavy imports: keep --help fast
    from core.engines import PartitionJobError, check_engine, spark_engine
    from core.settings import get_settings
    from core.tables import read_partition, table_layout
    from registry.client import Registry
    from training.batch_scoring import (
        ScoringError,
        check_churn_model,
        output_format,
        retention_list_partitions,
        write_atomically,
    )

    console = Console(stderr=True)
    expected = (ScoringError, TablesMissingError, CatalogueError, RegistryError, MlflowException)
    with exit_on(*expected, EngineUnavailableError, PartitionJobError, OSError):
        choice = check_engine(engine, spark_master)
        output_format(out)  # fail before the expensive part
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        name, alias = settings.churn_model_name, alias or settings.serving_alias
        loaded = Registry(settings).load(name, alias)
        model = check_churn_model(loaded.scorer, f"{name} version {loaded.version}")
        layout = table_layout(settings.data_dir)
        bar = counter(console)
        with spark_engine(choice, "nbo score churn") as spark, bar:
            task = bar.add_task(f"features at {as_of:%Y-%m-%d}", total=None)
            where = {"partition": ""}

            def on_partition(k: int, partitions: int) -> None:
                where["partition"] = f"partition {k + 1}/{partitions}: " if partitions > 1 else ""
                bar.update(task, description=f"{where['partition']}reading, features")

            def advance(done: int, total: int) -> None:
                description = f"{where['partition']}scoring"
                bar.update(task, description=description, completed=done, total=total)

            if spark is not None:
                where["partition"] = f"{layout.partitions} partition(s) as Spark tasks: "
                bar.update(task, description=f"{where['partition']}reading, features, scoring")
            started = time.perf_counter()
            scores = retention_list_partitions(
                model,
                layout.partitions,
                functools.partial(read_partition, settings.data_dir),
                catalogue,
                settings,
                as_of.date(),
                advance,
                on_partition,
                spark=spark,
            )
            seconds = time.perf_counter() - started
            bar.update(task, description=f"writing {out}")
            write_atomically(scores, out)
    bands = scores["band"].value_counts()
    typer.echo(f"model      {name} version {loaded.version} ({alias})")
    typer.echo(f"customers  {len(scores):,} scored as of {as_of:%Y-%m-%d}")
    typer.echo(
        "bands      "
        + ", ".join(f"{b} {int(bands.get(b, 0)):,}" for b in ("high", "medium", "low"))
    )
    typer.echo(
        f"rate       {len(scores) / seconds:,.0f} customers/s (reading, features and scoring: "
        f"{seconds:.1f} s, {layout.partitions} partition(s))"
    )
    typer.echo(f"written    {out}")


@app.command("recommendations")
def recommendations(
    top_reasons: Annotated[
        int,
        typer.Option(
            "--top-reasons", min=0, help="Products per customer whose reasons are stored."
        ),
    ] = 8,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Score sets kept.")] = 2,
) -> None:
    """Precompute every customer's recommender scores, top reasons and churn risk.

    Scores the live feature set with the served recommender and churn model (the serving
    alias) and publishes a score set the service reads in its one Redis round trip while
    the feature set and model versions match; any other request is scored online. Run it
    after every materialization and every promotion.

    Example: nbo score recommendations
    """
    from core.redis_server import connect
    from core.settings import get_settings
    from features.online_store import OnlineStore
    from registry.client import Registry
    from training.precompute_scores import PrecomputeError, precompute_scores, served_models

    console = Console(stderr=True)
    with exit_on(PrecomputeError, RegistryError, MlflowException, redis.RedisError):
        settings = get_settings()
        recommender, churn = served_models(Registry(settings), settings)
        client = connect(settings)
        store = OnlineStore.for_settings(client, settings)
        bar = counter(console)
        started = time.perf_counter()
        with bar:
            task = bar.add_task("scoring customers", total=None)
            info = precompute_scores(
                client,
                store,
                recommender,
                churn,
                top_reasons=top_reasons,
                keep=keep,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        seconds = time.perf_counter() - started
    churn_text = f"{info.churn.name} version {info.churn.version}" if info.churn else "none"
    typer.echo(f"score set  {info.version}")
    typer.echo(
        f"models     {info.recommender.name} version {info.recommender.version}, churn {churn_text}"
    )
    typer.echo(f"customers  {info.customers:,} of feature set {info.feature_set}")
    typer.echo(f"rate       {info.customers / seconds:,.0f} customers/s ({seconds:.1f} s)")
