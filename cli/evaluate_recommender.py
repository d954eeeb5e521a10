"""``nbo evaluate recommender``: the Santander competition's MAP@7 on a panel file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import exit_on, fail
from cli.evaluation_log import LogRun, record
from cli.params import apply_params


def recommender(
    train_until: Annotated[
        datetime, typer.Option("--train-until", formats=["%Y-%m-%d"], help="Last snapshot seen.")
    ],
    target: Annotated[
        datetime, typer.Option("--target", formats=["%Y-%m-%d"], help="Snapshot scored.")
    ],
    santander: Annotated[
        Path | None,
        typer.Option("--santander", help="Panel in the Kaggle train_ver2.csv format."),
    ] = None,
    tables_dir: Annotated[
        Path | None,
        typer.Option(
            "--tables",
            help="Instead of --santander: a table set (e.g. from nbo data generate --out DIR).",
        ),
    ] = None,
    unseen_customers: Annotated[
        bool,
        typer.Option(
            "--unseen-customers",
            help="Cross-fit by customer: every customer is scored by a model trained on "
            "the other folds' customers only.",
        ),
    ] = False,
    folds: Annotated[
        int,
        typer.Option("--folds", min=2, help="Customer folds of --unseen-customers."),
    ] = 5,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="Override a RecommenderConfig field for this evaluation (repeatable), "
            "e.g. --param factors=16 --param seed=107; categorical_inputs takes a "
            "comma-separated list.",
        ),
    ] = None,
    channel: Annotated[
        str,
        typer.Option(
            "--channel",
            help="Channel whose rules (core/decisioning.yaml) filter the served lists.",
        ),
    ] = "app",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    log: LogRun = False,
) -> None:
    """MAP@7, NDCG@7, recall@7 and coverage of the recommender against popularity.

    Trains on the panel up to --train-until only, ranks the products not held then for
    every customer who added a product by --target, and scores those additions.

    With --unseen-customers, customers are split into --folds hash folds and each fold is
    scored by a model that never saw any of its customers.

    Beside it, served MAP@7: the same model's list after the suitability and eligibility
    filter (as of --train-until) and the channel rules of --channel (default app), i.e.
    what a customer would actually be shown.

    --param NAME=VALUE overrides one field of RecommenderConfig (the names are listed
    when a wrong one is given); the --json output carries them under "params".

    --tables DIR evaluates a table set as it is (a synthetic bank has no panel-end fields).

    --log records the figures as an MLflow run whose logged model is the recommender this
    evaluation fitted (the last fold's with --unseen-customers).

    Example: nbo evaluate recommender --santander ../shared/data/santander/panel_2015-12_to_2016-05.csv.gz --train-until 2016-02-28 --target 2016-03-28 --unseen-customers --param factors=16 --param seed=107 --json
    """  # noqa: E501
    if (santander is None) == (tables_dir is None):
        raise fail("give exactly one of --santander PANEL or --tables DIR")
    if train_until >= target:
        raise fail(
            f"--train-until {train_until:%Y-%m-%d} must be before --target {target:%Y-%m-%d}"
        )
    from core.catalogue import CatalogueError, load_catalogue  # heavy imports: keep --help fast
    from core.decisioning import DecisioningError, load_decisioning
    from core.settings import get_settings
    from core.tables import CHANNELS, TablesMissingError
    from features.errors import DataFormatError
    from training.evaluate_recommender import evaluate_panel
    from training.recommender import RecommenderConfig
    from training.served_lists import ServedFilter

    if channel not in CHANNELS:
        raise fail(f"--channel {channel!r} is not a channel (one of {', '.join(CHANNELS)})")

    try:
        config, overrides = apply_params(RecommenderConfig(), params or [])
    except ValueError as exc:
        raise fail(str(exc)) from None

    errors = (DataFormatError, CatalogueError, DecisioningError, TablesMissingError, ValueError)
    with exit_on(*errors, OSError):
        settings = get_settings()
        catalogue = load_catalogue(settings.catalogue_path)
        served = ServedFilter(
            catalogue,
            load_decisioning(settings.decisioning_path, catalogue),
            channel,
            settings.risk_assessment_validity_days,
        )
        source, evaluate = (
            (santander, evaluate_panel) if santander is not None else (tables_dir, _evaluate_dir)
        )
        assert source is not None  # exactly one was given (checked above)
        result = evaluate(
            source,
            catalogue,
            train_until.date(),
            target.date(),
            config,
            unseen_customers=unseen_customers,
            folds=folds,
            served=served,
        )
    m = result.evaluation.metrics
    s = result.served or {}
    if log:
        from training.evaluation_log import Evaluated

        who = f"unseen customers, {folds}-fold cross-fit" if unseen_customers else "customers"
        how = f"trained until {train_until:%Y-%m-%d}, {who} adding by {target:%Y-%m-%d}"
        evaluated = Evaluated(
            "recommender of training/recommender.py fitted by this evaluation on the file "
            + ("(the last fold's model is the run's)" if unseen_customers else "(the run's model)"),
            same_code_as="nbo train recommender",
            scorer=result.fitted.scorer,
        )
        logged = {**overrides, "channel": channel}
        with exit_on(OSError, ValueError):
            record(settings, "recommender", source, {**m, **s}, evaluated, how, logged)
    if as_json:
        out = {**m, **s, "customers": int(m["customers"]), "params": overrides}
        typer.echo(json.dumps(out))
        return
    if overrides:
        typer.echo("params      " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    who = f"customers (unseen: {folds}-fold cross-fit)" if unseen_customers else "customers"
    typer.echo(f"scored      {int(m['customers'])} {who} who added a product")
    typer.echo(f"MAP@7       {m['map_at_7']:.4f}  (popularity {m['popularity_map_at_7']:.4f})")
    if s:
        typer.echo(
            f"served      MAP@7 {s['served_map_at_7']:.4f} after suitability, eligibility and "
            f"{s['served_channel']} channel rules; {float(s['served_empty_share']):.1%} "
            "of customers would be shown nothing"
        )
    typer.echo(f"NDCG@7      {m['ndcg_at_7']:.4f}")
    typer.echo(f"recall@7    {m['recall_at_7']:.4f}")
    typer.echo(f"coverage    {m['catalogue_coverage']:.2f} of the catalogue recommended")


def _evaluate_dir(directory: Path, catalogue: Any, *args: Any, **kwargs: Any) -> Any:
    """``evaluate_tables`` on the table set in ``directory`` (same arguments as
    ``evaluate_panel``)."""
    from core.tables import read_tables
    from training.evaluate_recommender import evaluate_tables

    return evaluate_tables(read_tables(directory), catalogue, *args, **kwargs)
