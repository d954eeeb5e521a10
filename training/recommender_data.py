"""Training examples of the boosted recommender: feature frames -> model inputs and classes.

The model learns "given that a customer adds a product next month, which one": one example
per (customer, product added between snapshot ``T`` and the next), weighted ``1 / number
of products that customer added`` so every adding customer counts once, as in MAP@7.
Features come from ``compute_features`` at ``T`` (nothing after ``T``), labels from
``training.labels`` (what followed ``T``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.scoring.boosted import BoostedRecommender
from core.scoring.design import column_as_float


def field_matrix(features: pd.DataFrame, fields: Sequence[str]) -> np.ndarray:
    """Record fields of a feature frame as float64 ``(rows, fields)``; NaN where unknown or
    absent (a bank without behaviour data has no ``balance`` column worth the name)."""
    columns = []
    for name in fields:
        if name not in features.columns:
            columns.append(np.full(len(features), np.nan))
            continue
        column = features[name]
        if pd.api.types.is_bool_dtype(column.dtype):
            column = column.astype("boolean").astype("Float64")
        columns.append(column_as_float(column))
    return np.column_stack(columns) if columns else np.zeros((len(features), 0))


def frame_inputs(model: BoostedRecommender, features: pd.DataFrame) -> np.ndarray:
    """Model input rows of a feature frame (same numbers as ``record_inputs`` per row)."""
    raw = field_matrix(features, model.record_fields)
    return model.design(raw, *(_categories(features, name) for name in model.text_fields))


def _categories(features: pd.DataFrame, name: str) -> np.ndarray:
    if name not in features.columns:
        return np.full(len(features), None, dtype=object)
    column = features[name]
    return column.astype(object).where(column.notna(), None).to_numpy(dtype=object)


def held_matrix(features: pd.DataFrame, product_ids: Sequence[str]) -> np.ndarray:
    """0/1 ``(rows, products)`` held at the snapshot."""
    values = field_matrix(features, [f"held__{p}" for p in product_ids])
    return (np.nan_to_num(values, nan=0.0) > 0).astype(np.float64)


@dataclass(frozen=True)
class Snapshot:
    """Features at one snapshot and the 0/1 products added by the next one (aligned rows)."""

    features: pd.DataFrame
    added: np.ndarray  # (rows, products)


def align(features: pd.DataFrame, labels: pd.DataFrame, product_ids: Sequence[str]) -> Snapshot:
    """Customers with both features and a label; label columns in ``product_ids`` order."""
    common = features.index.intersection(labels.index)
    added = labels.loc[common, list(product_ids)].to_numpy(np.float64)
    return Snapshot(features.loc[common], added)


@dataclass(frozen=True)
class Examples:
    """Stacked training examples: the adding customers' features, class and weight."""

    features: pd.DataFrame  # one row per (customer, added product)
    classes: np.ndarray  # product index
    weights: np.ndarray


def examples(
    snapshots: Sequence[Snapshot], max_rows: int, seed: int, recency_decay: float = 1.0
) -> Examples:
    """One example per added product of every adding customer, sampled to ``max_rows``.

    Snapshots are oldest first; each one older than the latest weighs ``recency_decay``
    times the next (1 = all months alike)."""
    frames: list[pd.DataFrame] = []
    classes: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for age, snap in enumerate(reversed(snapshots)):
        rows, products = np.nonzero(snap.added > 0)
        counts = snap.added.sum(axis=1)
        frames.insert(0, snap.features.iloc[rows])
        classes.insert(0, products)
        weights.insert(0, recency_decay**age / counts[rows])
    frame = pd.concat(frames) if frames else pd.DataFrame()
    cls = np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64)
    w = np.concatenate(weights) if weights else np.zeros(0)
    if len(cls) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(cls), max_rows, replace=False))
        frame, cls, w = frame.iloc[keep], cls[keep], w[keep]
    return Examples(frame, cls.astype(np.int64), w)


def customer_fold(customer_ids: Sequence[str] | pd.Index, folds: int) -> np.ndarray:
    """Fold ``0..folds-1`` of every customer in a fixed hash split of their ids.

    CRC32 of the id, not Python's ``hash`` (salted per process): the same customers fall in
    the same fold on every run and machine.
    """
    return np.array([zlib.crc32(str(c).encode()) % folds for c in customer_ids], dtype=np.int64)
