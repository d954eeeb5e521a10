"""``nbo evaluate recommender``: the Santander competition's MAP@7 on a panel file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on, fail


def recommender(
    santander: Annotated[
        Path, typer.Option("--santander", help="Panel in the Kaggle train_ver2.csv format.")
    ],
    train_until: Annotated[
        datetime, typer.Option("--train-until", formats=["%Y-%m-%d"], help="Last snapshot seen.")
    ],
    target: Annotated[
        datetime, typer.Option("--target", formats=["%Y-%m-%d"], help="Snapshot scored.")
    ],
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """MAP@7, NDCG@7, recall@7 and coverage of the recommender against popularity.

    Trains on the panel up to --train-until only, ranks the products not held then for
    every customer who added a product by --target, and scores those additions.

    With --unseen-customers, customers are split into --folds hash folds and each fold is
    scored by a model that never saw any of its customers.

    Example: nbo evaluate recommender --santander ../shared/data/santander/panel_2015-12_to_2016-05.csv.gz --train-until 2016-04-28 --target 2016-05-28
    """  # noqa: E501
    if train_until >= target:
        raise fail(
            f"--train-until {train_until:%Y-%m-%d} must be before --target {target:%Y-%m-%d}"
        )
    from core.catalogue import CatalogueError, load_catalogue  # heavy imports: keep --help fast
    from core.settings import get_settings
    from features.errors import DataFormatError
    from training.evaluate_recommender import evaluate_panel

    with exit_on(DataFormatError, CatalogueError, ValueError, OSError):
        catalogue = load_catalogue(get_settings().catalogue_path)
        result = evaluate_panel(
            santander,
            catalogue,
            train_until.date(),
            target.date(),
            unseen_customers=unseen_customers,
            folds=folds,
        )
    m = result.evaluation.metrics
    if as_json:
        typer.echo(json.dumps({**m, "customers": int(m["customers"])}))
        return
    who = f"customers (unseen: {folds}-fold cross-fit)" if unseen_customers else "customers"
    typer.echo(f"scored      {int(m['customers'])} {who} who added a product")
    typer.echo(f"MAP@7       {m['map_at_7']:.4f}  (popularity {m['popularity_map_at_7']:.4f})")
    typer.echo(f"NDCG@7      {m['ndcg_at_7']:.4f}")
    typer.echo(f"recall@7    {m['recall_at_7']:.4f}")
    typer.echo(f"coverage    {m['catalogue_coverage']:.2f} of the catalogue recommended")
