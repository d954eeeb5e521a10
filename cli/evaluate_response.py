"""``nbo evaluate response``: the offer-response model on the UCI Bank Marketing file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on
from cli.evaluation_log import LogRun, record


def response(
    bank_marketing: Annotated[
        Path, typer.Option("--bank-marketing", help="Bank Marketing CSV (';') to fit on.")
    ],
    test: Annotated[
        Path | None,
        typer.Option("--test", help="Score this file with a model fitted on the first; else CV."),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="CV folds.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fold split and models.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    log: LogRun = False,
) -> None:
    """ROC-AUC, PR-AUC, Brier score and top-decile lift of the calibrated response model.

    Without --test: stratified, seeded k-fold CV on --bank-marketing (gradient boosting and
    logistic regression; the better by ROC-AUC is reported). With --test: the algorithm is
    chosen by CV on --bank-marketing, fitted on all of it and scored on --test. The file's
    rows go through the service's own feature function; `duration` is never read. With
    --log the figures are recorded as an MLflow run, with the chosen model fitted on the
    whole --bank-marketing file as the run's logged model (what `nbo train response` would
    register).

    Example: nbo evaluate response --bank-marketing bank_marketing/bank_marketing_dev.csv
    """
    from training.response import (  # heavy imports: keep --help fast
        BankMarketingError,
        cross_validate,
        describe,
        fit_and_score,
        fit_response,
        load_bank_marketing,
    )

    with exit_on(BankMarketingError):
        train = load_bank_marketing(bank_marketing)
        if test is None:
            metrics = cross_validate(train, folds=folds, seed=seed)
            how = f"{folds}-fold stratified CV (seed {seed})"
        else:
            metrics = fit_and_score(train, load_bank_marketing(test), folds=folds, seed=seed)
            how = f"held out {test}"
        if log:
            from core.settings import get_settings
            from training.evaluation_log import Evaluated

            evaluated = Evaluated(
                f"calibrated {metrics['algorithm']} of training/response.py, fitted on all "
                f"of {bank_marketing.name} (the run's model); figures: {how}",
                same_code_as="nbo train response --bank-marketing",
                scorer=fit_response(train, str(metrics["algorithm"]), seed),
            )
            params = {"folds": folds, "seed": seed}
            record(get_settings(), "response", bank_marketing, metrics, evaluated, how, params)
    if as_json:
        typer.echo(json.dumps({**metrics, "rows": int(metrics["rows"])}))
        return
    typer.echo(f"evaluation  {how}, {int(metrics['rows'])} contacts scored")
    typer.echo(
        f"model       {metrics['algorithm']} (CV ROC-AUC on the training file: {describe(metrics)})"
    )
    typer.echo(f"ROC-AUC     {metrics['roc_auc']:.4f}")
    typer.echo(f"PR-AUC      {metrics['pr_auc']:.4f}")
    typer.echo(f"Brier       {metrics['brier']:.4f}")
    typer.echo(f"top decile  {metrics['top_decile_lift']:.2f}x the average acceptance rate")
