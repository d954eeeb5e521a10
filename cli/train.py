"""``nbo train``: fit a model on the canonical tables, evaluate it and register it in MLflow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console

from cli.errors import exit_on
from cli.progress import spinner
from core.catalogue import Catalogue, CatalogueError, load_catalogue
from core.settings import Settings, get_settings
from core.tables import Tables, TablesMissingError, read_tables
from registry.client import RegistryError
from training import TrainResult

app = typer.Typer(no_args_is_help=True)

_EXPECTED_ERRORS = (
    TablesMissingError,
    CatalogueError,
    ValueError,  # includes training.datasets.DatasetError
    RegistryError,
    MlflowException,
    OSError,
)


def _inputs() -> tuple[Tables, Catalogue, Settings]:
    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    return read_tables(settings.data_dir), catalogue, settings


def _run(job: Callable[..., TrainResult], what: str) -> TrainResult:
    console = Console(stderr=True)
    with exit_on(*_EXPECTED_ERRORS):
        tables, catalogue, settings = _inputs()
        bar = spinner(console)
        with bar:
            task = bar.add_task(f"{what}: reading tables", total=None)
            result = job(
                tables,
                catalogue,
                settings,
                progress=lambda msg: bar.update(task, description=f"{what}: {msg}"),
            )
    typer.echo(f"model      {result.model_name} version {result.version}")
    typer.echo(f"run        {result.run_id}")
    typer.echo(f"holdout    {result.params.get('holdout_as_of', '?')}")
    typer.echo(f"elapsed    {result.seconds:.1f} s")
    return result


@app.command("recommender")
def recommender() -> None:
    """Train the two-stage recommender, report MAP@7 against popularity, register a version.

    Example: nbo train recommender
    """
    from training.recommender import train_recommender  # heavy imports: keep --help fast

    result = _run(train_recommender, "recommender")
    m = result.metrics
    typer.echo(
        f"MAP@7      {m['map_at_7']:.4f}  (popularity baseline {m['popularity_map_at_7']:.4f}, "
        f"{int(m['holdout_customers'])} customers who added a product)"
    )
    typer.echo(f"NDCG@7     {m['ndcg_at_7']:.4f}")
    typer.echo(f"recall@7   {m['recall_at_7']:.4f}")


@app.command("churn")
def churn() -> None:
    """Train the calibrated churn model, report ROC-AUC / PR-AUC / Brier, register a version.

    Example: nbo train churn
    """
    from training.churn import train_churn  # heavy imports: keep --help fast

    result = _run(train_churn, "churn")
    m = result.metrics
    typer.echo(f"ROC-AUC    {m['roc_auc']:.4f}")
    typer.echo(f"PR-AUC     {m['pr_auc']:.4f}  (holdout churn rate {m['holdout_churn_rate']:.4f})")
    typer.echo(f"Brier      {m['brier']:.4f}")
    typer.echo(f"top decile {m['top_decile_churn_rate']:.4f} churn rate")


@app.command("maturity")
def maturity() -> None:
    """Train the maturity outflow model (does a maturing deposit's money leave the bank within
    30 days?), report ROC-AUC / PR-AUC / Brier on the time holdout, register a version.

    Needs a contracts table (the synthetic bank has one; the Santander import leaves it empty).

    Example: nbo train maturity
    """
    from training.maturity import train_maturity  # heavy imports: keep --help fast

    result = _run(train_maturity, "maturity")
    m = result.metrics
    typer.echo(f"ROC-AUC    {m['roc_auc']:.4f}")
    typer.echo(
        f"PR-AUC     {m['pr_auc']:.4f}  (holdout outflow rate {m['holdout_outflow_rate']:.4f})"
    )
    typer.echo(f"Brier      {m['brier']:.4f}")
    typer.echo(f"top decile {m['top_decile_lift']:.2f}x the average outflow rate")
    typer.echo(f"contracts  {int(m['rows'])} in the holdout, {int(m['train_rows'])} to train")


@app.command("response")
def response(
    bank_marketing: Annotated[
        Path | None, typer.Option("--bank-marketing", help="Bank Marketing CSV (';') to train on.")
    ] = None,
    logged: Annotated[
        Path | None,
        typer.Option(
            "--logged",
            help="Folder with the service's exports: decisions.jsonl (or .parquet) from "
            "nbo audit export and events.parquet from nbo events export.",
        ),
    ] = None,
    window_days: Annotated[
        int,
        typer.Option("--window-days", help="With --logged: an acceptance counts within N days."),
    ] = 30,
) -> None:
    """Train the calibrated offer-response model (algorithm chosen by 5-fold CV), report the
    CV ROC-AUC, register a version of nbo-response.

    Data: a Bank Marketing file (--bank-marketing), or the service's own logged decisions
    and events (--logged DIR): one row per offer shown, its features computed by the
    service's own function from the record the decision read, the contact history before
    it, the channel and the time; label = accepted within --window-days. A bad file exits
    with code 2 and registers nothing.

    Example: nbo train response --bank-marketing bank_marketing/bank_marketing_dev.csv

    Example: nbo train response --logged logs   (logs/decisions.jsonl, logs/events.parquet)
    """
    from training.response import (  # heavy imports: keep --help fast
        BankMarketingError,
        describe,
        train_response,
    )
    from training.response_logged import LoggedDataError, train_response_logged

    if (bank_marketing is None) == (logged is None):
        typer.echo("error: give exactly one of --bank-marketing FILE or --logged DIR", err=True)
        raise typer.Exit(2)
    console = Console(stderr=True)
    with exit_on(
        BankMarketingError, LoggedDataError, CatalogueError, RegistryError, MlflowException, OSError
    ):
        settings = get_settings()
        bar = spinner(console)
        with bar:
            task = bar.add_task("response: reading the data", total=None)

            def progress(msg: str) -> None:
                bar.update(task, description=f"response: {msg}")

            if logged is not None:
                catalogue = load_catalogue(settings.catalogue_path)
                try:  # the tables only fill in decisions that recorded no feature record
                    tables: Tables | None = read_tables(settings.data_dir)
                except TablesMissingError:
                    tables = None
                result = train_response_logged(
                    logged, settings, tables, catalogue, window_days, progress=progress
                )
            else:
                assert bank_marketing is not None
                result = train_response(bank_marketing, settings, progress=progress)
    m = result.metrics
    typer.echo(f"model      {result.model_name} version {result.version}")
    typer.echo(f"run        {result.run_id}")
    typer.echo(f"algorithm  {result.params['algorithm']} (CV ROC-AUC: {describe(m)})")
    typer.echo(f"ROC-AUC    {m['roc_auc']:.4f}  ({result.params['holdout_as_of']})")
    typer.echo(f"PR-AUC     {m['pr_auc']:.4f}")
    typer.echo(f"Brier      {m['brier']:.4f}")
    typer.echo(f"top decile {m['top_decile_lift']:.2f}x the average acceptance rate")
    typer.echo(f"elapsed    {result.seconds:.1f} s")
