"""Point-in-time training sets and the time-based split.

For every snapshot ``T`` used, features come from ``compute_features(tables, T)`` alone
(which drops every row dated after ``T``), for the customers still with the bank at ``T``
(``training.population``: departed customers are never trained on), and labels from
``training.labels`` (which look only after ``T``); the two are joined on customer id and
nothing else crosses ``T``.

Split by time, never by customer: the holdout is the LAST snapshot whose label window is
complete (recommender: a next snapshot exists; churn: ``T + horizon`` is within the data),
and training uses the snapshots before it. That is how the model will be used: fitted on
the past, scoring a month it has not seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.moments import MomentsConfig
from core.tables import Tables
from training.labels import (
    added_products,
    churned_within,
    data_end,
    horizon_end,
    snapshot_months,
)
from training.population import training_features

Progress = Callable[[str], None]
"""Receives a short message at each step of a long job (the CLI shows it)."""


class DatasetError(ValueError):
    """The tables cannot yield a training set (too few snapshots, no labels, ...)."""


@dataclass(frozen=True)
class LabelledSnapshot:
    """Features at ``as_of`` and the labels that follow, aligned on ``customer_id``."""

    as_of: pd.Timestamp
    features: pd.DataFrame
    labels: pd.DataFrame  # recommender: 0/1 per product; churn: one column "churned"


@dataclass(frozen=True)
class TimeSplit:
    """Training snapshots (oldest first) and the holdout snapshot after them."""

    train: list[LabelledSnapshot]
    holdout: LabelledSnapshot

    @property
    def train_dates(self) -> list[pd.Timestamp]:
        return [s.as_of for s in self.train]


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _labelled(
    tables: Tables,
    catalogue: Catalogue,
    as_of: pd.Timestamp,
    labels: pd.DataFrame,
    moments: MomentsConfig | None,
) -> LabelledSnapshot:
    """Features and labels of the customers still with the bank at ``as_of`` (customers
    who had left are in the feature set for win-back, never in a training set)."""
    features = training_features(tables, as_of.date(), catalogue, moments)
    common = features.index.intersection(labels.index)
    return LabelledSnapshot(as_of, features.loc[common], labels.loc[common])


def _split(
    dates: list[pd.Timestamp], max_train_snapshots: int, what: str
) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    if len(dates) < 2:
        raise DatasetError(
            f"{what}: need at least 2 snapshots with a complete label window (one to train, "
            f"one to hold out), found {len(dates)}"
        )
    return dates[:-1][-max_train_snapshots:], dates[-1]


def recommender_split(
    tables: Tables,
    catalogue: Catalogue,
    *,
    min_history: int = 1,
    max_train_snapshots: int = 6,
    progress: Progress | None = None,
    moments: MomentsConfig | None = None,
) -> TimeSplit:
    """Snapshots with ``min_history`` earlier snapshots and a next one; last = holdout."""
    months = snapshot_months(tables)
    product_ids = [p.id for p in catalogue.holdable]
    usable = months[min_history:-1]
    train_dates, holdout_date = _split(usable, max_train_snapshots, "recommender")
    nxt = {m: months[i + 1] for i, m in enumerate(months[:-1])}
    snaps = []
    for as_of in [*train_dates, holdout_date]:
        _say(progress, f"features and labels at {as_of:%Y-%m-%d}")
        labels = added_products(tables, as_of, nxt[as_of], product_ids)
        snaps.append(_labelled(tables, catalogue, as_of, labels, moments))
    return TimeSplit(snaps[:-1], snaps[-1])


def churn_split(
    tables: Tables,
    catalogue: Catalogue,
    horizon_months: int,
    *,
    min_history: int = 3,
    max_train_snapshots: int = 6,
    progress: Progress | None = None,
    moments: MomentsConfig | None = None,
) -> TimeSplit:
    """Snapshots with ``min_history`` earlier snapshots (3-month features defined) and a
    complete ``horizon_months`` label window; last = holdout."""
    months = snapshot_months(tables)
    end = data_end(tables)
    usable = [m for m in months[min_history:] if horizon_end(m, horizon_months) <= end]
    train_dates, holdout_date = _split(usable, max_train_snapshots, "churn")
    snaps = []
    for as_of in [*train_dates, holdout_date]:
        _say(progress, f"features and labels at {as_of:%Y-%m-%d}")
        labels = churned_within(tables.customers, as_of, horizon_months).to_frame()
        snaps.append(_labelled(tables, catalogue, as_of, labels, moments))
    return TimeSplit(snaps[:-1], snaps[-1])


def data_fingerprint(tables: Tables) -> str:
    """A short hash of the tables' shapes, date ranges, null counts and column sums.

    Two trainings with the same fingerprint saw the same data (up to a change that keeps
    every sum, count and range, which is not worth the cost of hashing every cell).
    """
    summary: dict[str, object] = {}
    for name in ("customers", "holdings", "behaviour"):
        frame: pd.DataFrame = getattr(tables, name)
        cols: dict[str, object] = {}
        for col in frame.columns:
            series = frame[col]
            entry: dict[str, object] = {"nulls": int(series.isna().sum())}
            if pd.api.types.is_datetime64_any_dtype(series.dtype):
                entry["min"], entry["max"] = str(series.min()), str(series.max())
            elif pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
                series.dtype
            ):
                entry["sum"] = repr(float(np.nansum(series.to_numpy(np.float64, na_value=np.nan))))
            else:
                entry["distinct"] = int(series.nunique())
            cols[str(col)] = entry
        summary[name] = {"rows": len(frame), "columns": cols}
    blob = json.dumps(summary, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
