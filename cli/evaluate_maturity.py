"""``nbo evaluate maturity``: the maturity outflow model on a time holdout of the data folder."""

from __future__ import annotations

import json

import typer

from cli.errors import exit_on
from cli.evaluation_log import LogRun, record


def maturity(
    holdout_snapshots: int = typer.Option(
        3, "--holdout-snapshots", min=1, help="Last snapshots with maturing contracts held out."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    log: LogRun = False,
) -> None:
    """ROC-AUC, PR-AUC, Brier score, top-decile lift and rows of the maturity outflow model.

    Fits on the earlier snapshots of the canonical tables in the data folder and scores the
    contracts maturing after the last --holdout-snapshots snapshots (features as of the
    snapshot before each maturity, label: the money left within 30 days after it). Nothing
    is registered (that is `nbo train maturity`); with --log the figures and the fitted
    model are recorded as an MLflow run.

    Example: nbo evaluate maturity --json
    """
    from core.catalogue import CatalogueError, load_catalogue  # heavy imports: keep --help fast
    from core.settings import get_settings
    from core.tables import TablesMissingError, read_tables
    from training.maturity import MaturityConfig, fit_and_evaluate

    with exit_on(TablesMissingError, CatalogueError, ValueError):
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        tables = read_tables(settings.data_dir)
        config = MaturityConfig(holdout_snapshots=holdout_snapshots)
        model, split, metrics = fit_and_evaluate(tables, catalogue, config)
        if log:
            from training.evaluation_log import Evaluated

            dates = ", ".join(f"{d:%Y-%m-%d}" for d in split.holdout_dates)
            how = f"time holdout: contracts maturing after {dates}"
            evaluated = Evaluated(
                "maturity outflow model of training/maturity.py fitted on the earlier "
                "snapshots (the run's model)",
                same_code_as="nbo train maturity",
                scorer=model,
            )
            params = {"holdout_snapshots": holdout_snapshots}
            record(settings, "maturity", settings.data_dir, metrics, evaluated, how, params)
    shown = {k: metrics[k] for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift")}
    shown["rows"] = int(metrics["rows"])
    if as_json:
        typer.echo(json.dumps(shown))
        return
    dates = ", ".join(f"{d:%Y-%m-%d}" for d in split.holdout_dates)
    typer.echo(f"holdout     contracts maturing after the snapshots {dates}: {shown['rows']}")
    typer.echo(f"ROC-AUC     {shown['roc_auc']:.4f}")
    typer.echo(f"PR-AUC      {shown['pr_auc']:.4f}")
    typer.echo(f"Brier       {shown['brier']:.4f}")
    typer.echo(f"top decile  {shown['top_decile_lift']:.2f}x the average outflow rate")
