"""``nbo evaluate recommender``: the Santander competition's protocol on a panel file.

Import the panel, cut it at ``train_until`` (every holdings and behaviour row dated later
is dropped before any feature is computed), train on every snapshot ``T`` whose next
snapshot is on or before ``train_until`` (features at ``T``, label = products added by the
next snapshot), rank the products not held at ``train_until`` for every customer who added
something by ``target``, and score MAP@7 against those additions. The target month is
read for the labels of the scored customers and for nothing else, so changing it cannot
change a ranking (``tests/test_recommender_quality.py`` checks exactly that).

``unseen_customers=True`` splits customers into two fixed halves by a hash of their id,
trains on one half's history and reports on the other half only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from core.catalogue import Catalogue
from core.tables import Tables
from features.pointintime import compute_features
from features.santander import import_santander
from training.datasets import DatasetError
from training.labels import added_products, snapshot_months
from training.recommender import (
    Evaluation,
    FittedRecommender,
    RecommenderConfig,
    evaluate,
    fit_recommender,
)
from training.recommender_data import Snapshot, align, customer_half


@dataclass(frozen=True)
class PanelResult:
    """The fitted model and its evaluation on the target month."""

    fitted: FittedRecommender
    evaluation: Evaluation
    train_snapshots: list[pd.Timestamp]


def cut(tables: Tables, until: pd.Timestamp) -> Tables:
    """The tables as known at ``until``: monthly rows dated later are gone."""
    return Tables(
        customers=tables.customers,
        holdings=tables.holdings[tables.holdings["month"] <= until],
        behaviour=tables.behaviour[tables.behaviour["month"] <= until],
    )


def _snapshot(tables: Tables, months: list[pd.Timestamp], when: date, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    if stamp not in months:
        found = ", ".join(f"{m:%Y-%m-%d}" for m in months) or "none"
        raise DatasetError(
            f"{what} {stamp:%Y-%m-%d} is not a snapshot of the panel (found {found})"
        )
    return stamp


def evaluate_tables(
    tables: Tables,
    catalogue: Catalogue,
    train_until: date,
    target: date,
    config: RecommenderConfig | None = None,
    *,
    unseen_customers: bool = False,
) -> PanelResult:
    """Train on ``tables`` up to ``train_until``; evaluate on the additions by ``target``."""
    config = config or RecommenderConfig()
    if train_until >= target:
        raise DatasetError(
            f"--train-until {train_until} must be before --target {target}: "
            "the model may not see the month it is evaluated on"
        )
    months = snapshot_months(tables)
    until = _snapshot(tables, months, train_until, "--train-until")
    goal = _snapshot(tables, months, target, "--target")
    product_ids = [p.id for p in catalogue.holdable]
    past = cut(tables, until)
    history = [m for m in months if m <= until]
    pairs = list(itertools.pairwise(history))[-config.max_train_snapshots :]
    if not pairs:
        raise DatasetError(
            f"no training month: the panel has no snapshot before --train-until {until:%Y-%m-%d}"
        )
    snapshots = []
    for as_of, nxt in pairs:
        snap = align(
            compute_features(past, as_of.date(), catalogue),
            added_products(past, as_of, nxt, product_ids),
            product_ids,
        )
        if unseen_customers:
            keep = customer_half(snap.features.index, 0)
            snap = Snapshot(snap.features[keep], snap.added[keep])
        snapshots.append(snap)
    fitted = fit_recommender(snapshots, product_ids, config)

    features = compute_features(past, until.date(), catalogue)
    labels = added_products(tables, until, goal, product_ids)
    scored = align(features, labels, product_ids)
    if unseen_customers:
        half = customer_half(scored.features.index, 1)
        scored = Snapshot(scored.features[half], scored.added[half])
    if not (scored.added.sum(axis=1) > 0).any():
        raise DatasetError(
            f"no customer added a product between {until:%Y-%m-%d} and {goal:%Y-%m-%d}: "
            "nothing to evaluate"
        )
    evaluation = evaluate(fitted.scorer, scored, config.k)
    return PanelResult(fitted, evaluation, [p[0] for p in pairs])


def evaluate_panel(
    panel: Path,
    catalogue: Catalogue,
    train_until: date,
    target: date,
    config: RecommenderConfig | None = None,
    *,
    unseen_customers: bool = False,
) -> PanelResult:
    """Import a Kaggle-format panel file and run :func:`evaluate_tables` on it.

    Refuses ``train_until >= target`` before reading anything.
    """
    if train_until >= target:
        raise DatasetError(f"--train-until {train_until} must be before --target {target}")
    tables = import_santander(panel, catalogue).tables
    return evaluate_tables(
        tables, catalogue, train_until, target, config, unseen_customers=unseen_customers
    )
