"""``nbo evaluate response``: the offer-response model on the UCI Bank Marketing file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import exit_on, fail
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
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=1,
            help="Repeat the CV with fold seeds --seed, --seed+1, ...; report the means "
            "(JSON: also each metric's _sd and _per_repeat).",
        ),
    ] = 1,
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
    register). With --repeats N the CV runs N times, fold seeds --seed to --seed+N-1: the
    model is chosen by its mean CV ROC-AUC and every figure is the mean over the repeats.

    Example: nbo evaluate response --bank-marketing bank_marketing/bank_marketing_dev.csv

    Example, fold seeds 0-4: nbo evaluate response --bank-marketing dev.csv --repeats 5 --json
    """
    if test is not None and repeats > 1:
        raise fail("--repeats applies to the CV figures: leave it out with --test")
    from training.response import (  # heavy imports: keep --help fast
        BankMarketingError,
        describe,
        fit_and_score,
        fit_response,
        load_bank_marketing,
    )
    from training.response_repeats import repeated_cross_validate

    with exit_on(BankMarketingError):
        train = load_bank_marketing(bank_marketing)
        if test is None:
            metrics = repeated_cross_validate(train, folds=folds, seed=seed, repeats=repeats)
            how = f"{folds}-fold stratified CV (seed {seed})"
            if repeats > 1:
                last = seed + repeats - 1
                how = f"{folds}-fold stratified CV x {repeats} (fold seeds {seed} to {last}), means"
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
            params = {"folds": folds, "seed": seed} | ({"repeats": repeats} if repeats > 1 else {})
            record(get_settings(), "response", bank_marketing, metrics, evaluated, how, params)
    if as_json:
        typer.echo(json.dumps({**metrics, "rows": int(metrics["rows"])}))
        return
    typer.echo(f"evaluation  {how}, {int(metrics['rows'])} contacts scored")
    typer.echo(
        f"model       {metrics['algorithm']} (CV ROC-AUC on the training file: {describe(metrics)})"
    )
    typer.echo(f"ROC-AUC     {metrics['roc_auc']:.4f}{spread(metrics, 'roc_auc')}")
    typer.echo(f"PR-AUC      {metrics['pr_auc']:.4f}{spread(metrics, 'pr_auc')}")
    typer.echo(f"Brier       {metrics['brier']:.4f}{spread(metrics, 'brier')}")
    typer.echo(
        f"top decile  {metrics['top_decile_lift']:.2f}x the average acceptance rate"
        f"{spread(metrics, 'top_decile_lift', 2)}"
    )


def spread(metrics: dict[str, Any], name: str, digits: int = 4) -> str:
    """`` (sd x; per fold seed a, b, ...)`` when the CV was repeated, else nothing."""
    if f"{name}_sd" not in metrics:
        return ""
    each = ", ".join(f"{v:.{digits}f}" for v in metrics[f"{name}_per_repeat"])
    return f" (sd {metrics[f'{name}_sd']:.{digits}f}; per fold seed {each})"
