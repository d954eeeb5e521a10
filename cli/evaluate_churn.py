"""``nbo evaluate churn``: the churn modelling recipe on the public Bank Customer Churn format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on
from cli.evaluation_log import LogRun, record


def churn(
    churn_modelling: Annotated[
        Path, typer.Option("--churn-modelling", help="Churn_Modelling CSV to fit on.")
    ],
    test: Annotated[
        Path | None,
        typer.Option("--test", help="Score this file with a model fitted on the first; else CV."),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="CV folds without --test.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    log: LogRun = False,
) -> None:
    """ROC-AUC, PR-AUC, Brier score and top-decile lift of the churn blend.

    With --test: fit on --churn-modelling, score --test (unseen customers). Without:
    stratified k-fold cross-validation on --churn-modelling. RowNumber, CustomerId and
    Surname are dropped on load and never used. With --log the figures are recorded as
    an MLflow run that says which model they belong to (this blend, fitted here: not the
    registered nbo-churn, which reads the bank's own feature records).

    Example: nbo evaluate churn --churn-modelling ../shared/data/bank_churn/Churn_Modelling_dev.csv
    """
    from training.churn_modelling import (  # heavy imports: keep --help fast
        ChurnModellingError,
        cross_validate,
        fit_and_score,
        load_churn_modelling,
    )

    with exit_on(ChurnModellingError):
        train = load_churn_modelling(churn_modelling)
        if test is None:
            metrics, how = cross_validate(train, folds=folds), f"{folds}-fold stratified CV"
        else:
            metrics, how = fit_and_score(train, load_churn_modelling(test)), f"held out {test}"
    if log:
        from core.settings import get_settings
        from training.evaluation_log import Evaluated

        evaluated = Evaluated(
            "churn blend of training/churn_modelling.py on the Churn_Modelling columns, "
            "fitted by this evaluation; not the registered nbo-churn (other features)"
        )
        record(get_settings(), "churn", churn_modelling, metrics, evaluated, how)
    if as_json:
        typer.echo(json.dumps({**metrics, "rows": int(metrics["rows"])}))
        return
    typer.echo(f"evaluation  {how}, {int(metrics['rows'])} customers scored")
    typer.echo(f"ROC-AUC     {metrics['roc_auc']:.4f}")
    typer.echo(f"PR-AUC      {metrics['pr_auc']:.4f}")
    typer.echo(f"Brier       {metrics['brier']:.4f}")
    typer.echo(f"top decile  {metrics['top_decile_lift']:.2f}x the average churn rate")
