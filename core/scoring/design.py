"""The tabular design shared by the churn and recommender models.

One function turns feature records (request path) and feature frames (training, batch
scoring) into the same standardized matrix, so training and serving cannot disagree:

* every numeric feature, heavy-tailed ones on a signed log scale (``sign(x)*log1p(|x|)``:
  a 1M balance should not weigh a thousand times a 1k one), missing values replaced by the
  training median, plus a 0/1 "missing" indicator for each feature that was missing in
  training (an unknown login history is itself a signal);
* one-hot columns for each categorical feature (unknown categories are all zeros);
* standardized with the training mean and scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, cast

import numpy as np
import pandas as pd

from core.scoring.base import FeatureRecord

SIGNED_LOG_FEATURES = frozenset(
    {"balance", "income", "net_flow_1m", "net_flow_3m", "balance_change_1m", "balance_change_3m"}
)
"""Heavy-tailed features (money, and ratios to a possibly tiny balance): signed log scale."""


def signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def _sign(x: float) -> float:
    """``np.sign`` of one float (``+0.0`` for either zero, NaN for NaN)."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0 if x == 0.0 else x


def as_float(value: object) -> float:
    """A record value as float; ``None`` / NaN / text -> NaN (imputed later)."""
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def floats(values: Sequence[object]) -> np.ndarray:
    """Record values as a float64 vector, NaN for ``None`` / non-numbers.

    numpy's own conversion (``None`` -> NaN) is the fast path on the request path; a text
    value where a number is expected falls back to the element-wise conversion.
    """
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([as_float(v) for v in values], dtype=np.float64)


def column_as_float(column: pd.Series) -> np.ndarray:
    """A frame column (float, nullable Int64 / boolean, object) as float64 with NaN."""
    if column.dtype == object:
        return np.array([as_float(v) for v in column], dtype=np.float64)
    numeric = pd.to_numeric(column, errors="coerce")
    if isinstance(numeric.dtype, pd.api.extensions.ExtensionDtype):
        numeric = numeric.astype("Float64")
    return np.asarray(numeric.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


class _RowConstants(NamedTuple):
    """A design's numbers as Python lists, for :meth:`TabularDesign.standardize_values`."""

    medians: list[float]
    mean: list[float]
    scale: list[float]
    logged: tuple[int, ...]  # positions of the signed-log features among ``numeric``
    flagged: tuple[int, ...]  # positions of the features with a "missing" column


@dataclass(frozen=True)
class TabularDesign:
    """Turns feature records (or a feature frame) into the model's standardized matrix.

    ``medians`` are the training medians of the raw numeric features (before the log);
    ``indicators`` are the numeric features that get a 0/1 "missing" column (those that
    were missing somewhere in training; for the others a missing flag would be a constant);
    ``mean`` / ``scale`` standardize the full design row.
    """

    numeric: tuple[str, ...]
    indicators: tuple[str, ...]
    categorical: tuple[tuple[str, tuple[str, ...]], ...]
    medians: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def feature_names(self) -> list[str]:
        return list(self.numeric) + [name for name, _ in self.categorical]

    @property
    def columns(self) -> list[str]:
        """Names of the design columns, in order."""
        cols = list(self.numeric) + [f"missing__{n}" for n in self.indicators]
        for name, levels in self.categorical:
            cols += [f"{name}={level}" for level in levels]
        return cols

    def raw_record(self, record: FeatureRecord) -> np.ndarray:
        """The unscaled numeric values of one record (NaN where missing), shape ``(1, n)``."""
        return floats([record.get(n) for n in self.numeric])[None, :]

    def raw_values(self, record: FeatureRecord) -> list[float]:
        """:meth:`raw_record` as a list of floats (the same conversion)."""
        return floats([record.get(n) for n in self.numeric]).tolist()

    def raw_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The unscaled numeric values of a feature frame, shape ``(rows, n)``."""
        if not self.numeric:
            return np.zeros((len(frame), 0))
        return np.column_stack([column_as_float(frame[n]) for n in self.numeric])

    def _categories(self, values: Sequence[Sequence[object] | np.ndarray], rows: int) -> np.ndarray:
        blocks = [np.zeros((rows, 0))]
        for (_, levels), column in zip(self.categorical, values, strict=True):
            col = np.asarray(column, dtype=object)
            blocks += [(col == level).astype(np.float64)[:, None] for level in levels]
        return np.hstack(blocks)

    def categories_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """One-hot columns of a feature frame, shape ``(rows, levels)``."""
        return self._categories(
            [frame[name].to_numpy(object) for name, _ in self.categorical], len(frame)
        )

    @cached_property
    def _log_mask(self) -> np.ndarray:
        return np.array([n in SIGNED_LOG_FEATURES for n in self.numeric], dtype=bool)

    @cached_property
    def _flag_positions(self) -> np.ndarray:
        return np.array([self.numeric.index(n) for n in self.indicators], dtype=np.intp)

    def unscaled(self, raw: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Imputed, log-scaled numeric values, missing flags and one-hots (not standardized)."""
        missing = np.isnan(raw)
        filled = np.where(missing, self.medians, raw)
        filled[:, self._log_mask] = signed_log(filled[:, self._log_mask])
        flags = missing[:, self._flag_positions].astype(np.float64)
        return np.hstack([filled, flags, categories])

    def standardize(self, raw: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Design rows from raw numeric values and one-hots (lets a caller convert once)."""
        return (self.unscaled(raw, categories) - self.mean) / self.scale

    @cached_property
    def _level_columns(self) -> tuple[tuple[str, dict[object, tuple[int, ...]]], ...]:
        """Per categorical feature: level -> its one-hot column(s), counted from 0."""
        out: list[tuple[str, dict[object, tuple[int, ...]]]] = []
        offset = 0
        for name, levels in self.categorical:
            columns: dict[object, tuple[int, ...]] = {}
            for j, level in enumerate(levels):
                columns[level] = (*columns.get(level, ()), offset + j)
            out.append((name, columns))
            offset += len(levels)
        return tuple(out)

    @cached_property
    def _n_levels(self) -> int:
        return sum(len(levels) for _, levels in self.categorical)

    def categories_values(self, record: FeatureRecord) -> list[float]:
        """One-hot values of one record, as a list.

        A dict lookup per feature instead of comparing against every level: the same
        ``==`` semantics (a hash match is followed by ``==``), the same 0/1 floats.
        """
        out = [0.0] * self._n_levels
        try:
            for name, columns in self._level_columns:
                for j in columns.get(record.get(name), ()):
                    out[j] = 1.0
        except TypeError:  # an unhashable value: compare level by level
            values = [[record.get(name)] for name, _ in self.categorical]
            return cast(list[float], self._categories(values, 1)[0].tolist())
        return out

    def categories_record(self, record: FeatureRecord) -> np.ndarray:
        """One-hot columns of one record, shape ``(1, levels)``."""
        return np.array([self.categories_values(record)], dtype=np.float64)

    @cached_property
    def _row_constants(self) -> _RowConstants:
        return _RowConstants(
            medians=self.medians.tolist(),
            mean=self.mean.tolist(),
            scale=self.scale.tolist(),
            logged=tuple(np.flatnonzero(self._log_mask).tolist()),
            flagged=tuple(self._flag_positions.tolist()),
        )

    def standardize_values(self, raw: list[float], categories: list[float]) -> list[float]:
        """:meth:`standardize` of one row given as lists (:meth:`raw_values`,
        :meth:`categories_values`), in Python floats.

        The same IEEE operations in the same order, so the same bits; ``log1p`` still goes
        through numpy, whose SIMD kernels can differ from ``math.log1p`` in the last bit.
        """
        constants = self._row_constants
        filled = [m if math.isnan(v) else v for v, m in zip(raw, constants.medians, strict=True)]
        if constants.logged:
            logs = np.log1p([abs(filled[k]) for k in constants.logged]).tolist()
            for k, log in zip(constants.logged, logs, strict=True):
                filled[k] = _sign(filled[k]) * log
        flags = [1.0 if math.isnan(raw[k]) else 0.0 for k in constants.flagged]
        return [
            (u - m) / s
            for u, m, s in zip(
                filled + flags + categories, constants.mean, constants.scale, strict=True
            )
        ]

    def transform_record(self, record: FeatureRecord) -> np.ndarray:
        """Standardized design row of one record, shape ``(1, columns)``."""
        return self.standardize(self.raw_record(record), self.categories_record(record))

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardized design matrix of a feature frame (row order kept)."""
        return self.standardize(self.raw_frame(frame), self.categories_frame(frame))

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Mapping[str, Sequence[str]],
    ) -> TabularDesign:
        """Learn medians, missing flags, mean and scale from a training frame."""
        names = tuple(numeric)
        cats = tuple((k, tuple(v)) for k, v in categorical.items())
        empty = np.zeros(0)
        raw = cls(names, (), cats, np.zeros(len(names)), empty, empty).raw_frame(frame)
        known = ~np.isnan(raw)
        counts = known.sum(axis=0)
        medians = np.array(
            [np.median(raw[known[:, j], j]) if counts[j] else 0.0 for j in range(len(names))]
        )
        indicators = tuple(n for j, n in enumerate(names) if counts[j] < len(frame))
        probe = cls(names, indicators, cats, medians, empty, empty)
        unscaled = probe.unscaled(raw, probe.categories_frame(frame))
        mean = unscaled.mean(axis=0)
        scale = unscaled.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column then contributes 0
        return cls(names, indicators, cats, medians, mean, scale)
