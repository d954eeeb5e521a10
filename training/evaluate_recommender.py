"""``nbo evaluate recommender``: the Santander competition's protocol on a panel file.

Import the panel, cut it at ``train_until`` (every holdings and behaviour row dated later
is dropped before any feature is computed), train on every snapshot ``T`` whose next
snapshot is on or before ``train_until`` (features at ``T``, label = products added by the
next snapshot), rank the products not held at ``train_until`` for every customer who added
something by ``target``, and score MAP@7 against those additions. The target month is
read for the labels of the scored customers and for nothing else, so changing it cannot
change a ranking (``tests/training/test_recommender_quality.py`` checks exactly that).

``unseen_customers=True`` cross-fits by customer: customers fall into ``folds`` fixed
groups by a hash of their id; for each group a model is trained on the other groups'
history only and scores that group's adders, so every reported customer is ranked by a
model that never saw a row of theirs. With ``folds=2`` that is "train on one half, report
the other" (twice); more folds train each model on more customers, as a deployed model
that meets a new customer was trained on the whole bank.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.tables import Tables
from features.santander import import_santander
from training.datasets import DatasetError
from training.labels import added_products, snapshot_months
from training.population import training_features
from training.recommender import (
    Evaluation,
    FittedRecommender,
    Ranked,
    RecommenderConfig,
    evaluate,
    fit_recommender,
    rank_adders,
    score_rankings,
)
from training.recommender_data import Snapshot, align, customer_fold
from training.served_lists import ServedFilter, ServedPart, rank_served, served_metrics

DEFAULT_FOLDS = 5
"""Customer folds of ``--unseen-customers``: each model trains on 80% of the customers."""


@dataclass(frozen=True)
class PanelResult:
    """The fitted model (the last fold's when cross-fitted) and its evaluation on the
    target month."""

    fitted: FittedRecommender
    evaluation: Evaluation
    train_snapshots: list[pd.Timestamp]
    # MAP@k of what a customer would be shown (``training.served_lists``), when asked for.
    served: dict[str, float | str] | None = None


PANEL_END_PROFILE = ("segment", "income", "tier", "region", "resident", "employee")
"""Customer master fields the Santander panel holds only as of its last month (2016-05,
/work/shared/data/README.md: "profile columns are as of 2016-05 in every month"): the
segment, the income (``renta``) and the tier derived from them, the province, residency
and the employee flag can change from month to month, so their panel values are the
target month's. :func:`without_panel_end_profile` makes them unknown."""

PANEL_END_BEHAVIOUR = ("active",)
"""Monthly behaviour the panel repeats from 2016-05 into every month
(``ind_actividad_cliente``)."""


def without_panel_end_profile(tables: Tables) -> Tables:
    """``tables`` with the fields the panel holds only as of its last month unknown.

    Why: evaluated on the panel, those values are the target month's - a model reading
    them reads the month it is scored on. Age and tenure (from the birth and join dates)
    and the acquisition channel do not change with the month and stay.
    """
    customers = tables.customers.copy()
    for column in PANEL_END_PROFILE:
        if column not in customers.columns:
            continue
        dtype = customers[column].dtype
        if pd.api.types.is_float_dtype(dtype):
            unknown = pd.Series(np.nan, index=customers.index, dtype="float64")
        elif pd.api.types.is_bool_dtype(dtype):
            unknown = pd.Series(pd.NA, index=customers.index, dtype="boolean")
        else:
            unknown = pd.Series(None, index=customers.index, dtype=object)
        customers[column] = unknown
    behaviour = tables.behaviour.copy()
    for column in PANEL_END_BEHAVIOUR:
        if column in behaviour.columns:
            behaviour[column] = pd.Series(pd.NA, index=behaviour.index, dtype="boolean")
    return Tables(customers=customers, holdings=tables.holdings, behaviour=behaviour)


def cut(tables: Tables, until: pd.Timestamp) -> Tables:
    """The tables as known at ``until``: monthly rows dated later are gone, customers who
    joined later are gone, and a departure dated later is not known yet."""
    customers = tables.customers[~(tables.customers["joined_on"] > until)].copy()
    customers.loc[customers["left_on"] > until, "left_on"] = pd.NaT
    return Tables(
        customers=customers,
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
    folds: int = DEFAULT_FOLDS,
    served: ServedFilter | None = None,
) -> PanelResult:
    """Train on ``tables`` up to ``train_until``; evaluate on the additions by ``target``.

    With ``served``, also MAP@k of the lists after the suitability, eligibility and channel
    filters, judged as of ``train_until`` (``training.served_lists``), by the same models.
    """
    config = config or RecommenderConfig()
    if train_until >= target:
        raise DatasetError(
            f"--train-until {train_until} must be before --target {target}: "
            "the model may not see the month it is evaluated on"
        )
    if unseen_customers and folds < 2:
        raise DatasetError(f"--folds must be at least 2 to hold customers out, got {folds}")
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
    snapshots = [
        align(
            training_features(past, as_of.date(), catalogue),
            added_products(past, as_of, nxt, product_ids),
            product_ids,
        )
        for as_of, nxt in pairs
    ]
    features = training_features(past, until.date(), catalogue)
    labels = added_products(tables, until, goal, product_ids)
    scored = align(features, labels, product_ids)
    if not (scored.added.sum(axis=1) > 0).any():
        raise DatasetError(
            f"no customer added a product between {until:%Y-%m-%d} and {goal:%Y-%m-%d}: "
            "nothing to evaluate"
        )
    served_parts: list[ServedPart] = []
    if not unseen_customers:
        fitted = fit_recommender(snapshots, product_ids, config)
        evaluation = evaluate(fitted.scorer, scored, config.k)
        if served is not None:
            served_parts.append(rank_served(fitted.scorer, scored, config.k, served, until.date()))
        return PanelResult(
            fitted,
            evaluation,
            [p[0] for p in pairs],
            _served(served_parts, config.k, served),
        )
    train_folds = [customer_fold(s.features.index, folds) for s in snapshots]
    scored_fold = customer_fold(scored.features.index, folds)
    parts: list[Ranked] = []
    for fold in range(folds):
        train = [_select(s, f != fold) for s, f in zip(snapshots, train_folds, strict=True)]
        fitted = fit_recommender(train, product_ids, config)
        held_out = _select(scored, scored_fold == fold)
        if held_out.added.any():  # a fold without adders has nothing to rank
            parts.append(rank_adders(fitted.scorer, held_out, config.k))
            if served is not None:
                served_parts.append(
                    rank_served(fitted.scorer, held_out, config.k, served, until.date())
                )
    evaluation = score_rankings(product_ids, parts, config.k)
    return PanelResult(
        fitted, evaluation, [p[0] for p in pairs], _served(served_parts, config.k, served)
    )


def _served(
    parts: list[ServedPart], k: int, served: ServedFilter | None
) -> dict[str, float | str] | None:
    return served_metrics(parts, k, served.channel) if served is not None else None


def _select(snapshot: Snapshot, keep: np.ndarray) -> Snapshot:
    return Snapshot(snapshot.features[keep], snapshot.added[keep])


def evaluate_panel(
    panel: Path,
    catalogue: Catalogue,
    train_until: date,
    target: date,
    config: RecommenderConfig | None = None,
    *,
    unseen_customers: bool = False,
    folds: int = DEFAULT_FOLDS,
    served: ServedFilter | None = None,
) -> PanelResult:
    """Import a Kaggle-format panel file and run :func:`evaluate_tables` on it, without the
    fields the panel holds only as of its last month (:func:`without_panel_end_profile`).

    Refuses ``train_until >= target`` before reading anything.
    """
    if train_until >= target:
        raise DatasetError(f"--train-until {train_until} must be before --target {target}")
    tables = without_panel_end_profile(import_santander(panel, catalogue).tables)
    return evaluate_tables(
        tables,
        catalogue,
        train_until,
        target,
        config,
        unseen_customers=unseen_customers,
        folds=folds,
        served=served,
    )
