"""``nbo train``: fit a model on the canonical tables, evaluate it and register it in MLflow."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console

from cli.errors import exit_on
from cli.params import apply_params
from cli.progress import spinner
from core.catalogue import Catalogue, CatalogueError, load_catalogue
from core.settings import Settings, get_settings
from core.tables import Tables, TablesMissingError, read_tables
from registry.client import RegistryError
from training import TrainResult
from training.tracking import RunOptions

app = typer.Typer(no_args_is_help=True)

_EXPECTED_ERRORS = (
    TablesMissingError,
    CatalogueError,
    ValueError,  # includes training.datasets.DatasetError
    RegistryError,
    MlflowException,
    OSError,
)


def _inputs(
    sample: int | None = None, sample_seed: int | None = None
) -> tuple[Tables, Catalogue, Settings, dict[str, object]]:
    """The tables to train on (a stratified sample when one is asked for), the catalogue,
    the settings and the run parameters that document the sample."""
    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    size = sample if sample is not None else settings.training_sample_customers
    if size is None:
        return read_tables(settings.data_dir), catalogue, settings, {}
    from training.sample import read_sample

    seed = sample_seed if sample_seed is not None else settings.training_sample_seed
    tables, drawn = read_sample(settings.data_dir, size, seed)
    return tables, catalogue, settings, drawn.params()


Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="NAME=VALUE: override one field of the model's config (repeatable); a wrong "
        "name lists the valid ones.",
    ),
]
Experiment = Annotated[
    str | None,
    typer.Option("--experiment", help="MLflow experiment for the run (default: nbo)."),
]
RunName = Annotated[
    str | None,
    typer.Option("--run-name", help="Run name (default: '<model> <date> <data folder>')."),
]
NoRegister = Annotated[
    bool,
    typer.Option(
        "--no-register",
        help="Log the run and its model but make no version of the production model.",
    ),
]
Description = Annotated[
    str | None, typer.Option("--description", help="The run's description (MLflow note).")
]
Sample = Annotated[
    int | None,
    typer.Option(
        "--sample",
        min=1,
        help="Train on N customers drawn by tier x churned (default: "
        "NBO_TRAINING_SAMPLE_CUSTOMERS, unset: all).",
    ),
]
SampleSeed = Annotated[
    int | None,
    typer.Option("--sample-seed", help="Seed of the sample (default: NBO_TRAINING_SAMPLE_SEED)."),
]


def _options(
    experiment: str | None, run_name: str | None, no_register: bool, description: str | None
) -> RunOptions:
    return RunOptions(experiment, run_name, not no_register, description)


def _run(
    job: Callable[..., TrainResult],
    what: str,
    config: object,
    params: list[str] | None,
    options: RunOptions,
    sample: int | None = None,
    sample_seed: int | None = None,
) -> TrainResult:
    console = Console(stderr=True)
    with exit_on(*_EXPECTED_ERRORS):
        config, overrides = apply_params(config, params or [])
        tables, catalogue, settings, sample_params = _inputs(sample, sample_seed)
        options = dataclasses.replace(options, params=sample_params)
        bar = spinner(console)
        with bar:
            task = bar.add_task(f"{what}: reading tables", total=None)
            result = job(
                tables,
                catalogue,
                settings,
                progress=lambda msg: bar.update(task, description=f"{what}: {msg}"),
                config=config,
                options=options,
            )
    if result.version is None:
        typer.echo(f"model      {result.model_name}: logged, not registered (--no-register)")
    else:
        typer.echo(f"model      {result.model_name} version {result.version}")
    typer.echo(f"run        {result.run_id}")
    if sample_params:
        typer.echo(
            f"sample     {sample_params['sample.customers']:,} of "
            f"{sample_params['sample.population']:,} customers (tier x churned, seed "
            f"{sample_params['sample.seed']})"
        )
    if overrides:
        typer.echo("params     " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    typer.echo(f"holdout    {result.params.get('holdout_as_of', '?')}")
    typer.echo(f"elapsed    {result.seconds:.1f} s")
    return result


@app.command("recommender")
def recommender(
    param: Params = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    experiment: Experiment = None,
    run_name: RunName = None,
    no_register: NoRegister = False,
    description: Description = None,
) -> None:
    """Train the two-stage recommender, report MAP@7 against popularity, register a version.

    --param overrides a field of training.recommender.RecommenderConfig; with
    --experiment and --no-register a trial leaves the production model alone.

    Example: nbo train recommender --param max_iter=30 --experiment trials --no-register
    """
    from training.recommender import (  # heavy imports: keep --help fast
        RecommenderConfig,
        train_recommender,
    )

    options = _options(experiment, run_name, no_register, description)
    result = _run(
        train_recommender, "recommender", RecommenderConfig(), param, options, sample, sample_seed
    )
    m = result.metrics
    typer.echo(
        f"MAP@7      {m['map_at_7']:.4f}  (popularity baseline {m['popularity_map_at_7']:.4f}, "
        f"{int(m['holdout_customers'])} customers who added a product)"
    )
    typer.echo(f"NDCG@7     {m['ndcg_at_7']:.4f}")
    typer.echo(f"recall@7   {m['recall_at_7']:.4f}")


@app.command("churn")
def churn(
    param: Params = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    experiment: Experiment = None,
    run_name: RunName = None,
    no_register: NoRegister = False,
    description: Description = None,
) -> None:
    """Train the calibrated churn model, report ROC-AUC / PR-AUC / Brier, register a version.

    --param overrides a field of training.churn.ChurnConfig; with --experiment and
    --no-register a trial leaves the production model alone.

    Example: nbo train churn --param max_train_snapshots=3 --run-name "churn 3 snapshots"

    Example: nbo train churn --sample 200000   (200,000 customers by tier x churned)
    """
    from training.churn import ChurnConfig, train_churn  # heavy imports: keep --help fast

    options = _options(experiment, run_name, no_register, description)
    result = _run(train_churn, "churn", ChurnConfig(), param, options, sample, sample_seed)
    m = result.metrics
    typer.echo(f"ROC-AUC    {m['roc_auc']:.4f}")
    typer.echo(f"PR-AUC     {m['pr_auc']:.4f}  (holdout churn rate {m['holdout_churn_rate']:.4f})")
    typer.echo(f"Brier      {m['brier']:.4f}")
    typer.echo(f"top decile {m['top_decile_churn_rate']:.4f} churn rate")


@app.command("maturity")
def maturity(
    param: Params = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    experiment: Experiment = None,
    run_name: RunName = None,
    no_register: NoRegister = False,
    description: Description = None,
) -> None:
    """Train the maturity outflow model (does a maturing deposit's money leave the bank within
    30 days?), report ROC-AUC / PR-AUC / Brier on the time holdout, register a version.

    Needs a contracts table (the synthetic bank has one; the Santander import leaves it empty).

    --param overrides a field of training.maturity.MaturityConfig; --experiment,
    --run-name, --no-register and --description as for the other models.

    Example: nbo train maturity --experiment trials --no-register
    """
    from training.maturity import (  # heavy imports: keep --help fast
        MaturityConfig,
        train_maturity,
    )

    options = _options(experiment, run_name, no_register, description)
    result = _run(train_maturity, "maturity", MaturityConfig(), param, options, sample, sample_seed)
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
    param: Params = None,
    experiment: Experiment = None,
    run_name: RunName = None,
    no_register: NoRegister = False,
    description: Description = None,
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
        ResponseConfig,
        describe,
        train_response,
    )
    from training.response_logged import LoggedDataError, train_response_logged

    if (bank_marketing is None) == (logged is None):
        typer.echo("error: give exactly one of --bank-marketing FILE or --logged DIR", err=True)
        raise typer.Exit(2)
    console = Console(stderr=True)
    options = _options(experiment, run_name, no_register, description)
    with exit_on(
        BankMarketingError,
        LoggedDataError,
        CatalogueError,
        RegistryError,
        MlflowException,
        OSError,
        ValueError,
    ):
        config, _ = apply_params(ResponseConfig(), param or [])
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
                    logged,
                    settings,
                    tables,
                    catalogue,
                    window_days,
                    progress=progress,
                    folds=config.folds,
                    seed=config.seed,
                    algorithms=config.algorithms,
                    options=options,
                )
            else:
                assert bank_marketing is not None
                result = train_response(
                    bank_marketing,
                    settings,
                    progress=progress,
                    folds=config.folds,
                    seed=config.seed,
                    algorithms=config.algorithms,
                    options=options,
                )
    m = result.metrics
    if result.version is None:
        typer.echo(f"model      {result.model_name}: logged, not registered (--no-register)")
    else:
        typer.echo(f"model      {result.model_name} version {result.version}")
    typer.echo(f"run        {result.run_id}")
    typer.echo(f"algorithm  {result.params['algorithm']} (CV ROC-AUC: {describe(m)})")
    typer.echo(f"ROC-AUC    {m['roc_auc']:.4f}  ({result.params['holdout_as_of']})")
    typer.echo(f"PR-AUC     {m['pr_auc']:.4f}")
    typer.echo(f"Brier      {m['brier']:.4f}")
    typer.echo(f"top decile {m['top_decile_lift']:.2f}x the average acceptance rate")
    typer.echo(f"elapsed    {result.seconds:.1f} s")
