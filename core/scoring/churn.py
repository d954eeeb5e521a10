"""Churn risk at request time: a calibrated logistic regression exported to numpy arrays.

Training (``training/churn.py``) fits scikit-learn models and copies their learned numbers
into :class:`LinearChurnModel`; scoring one record is then a handful of numpy operations.

Design of one record (the same function builds the training matrix, so training and
serving cannot disagree):

* every numeric feature, heavy-tailed ones on a signed log scale (``sign(x)*log1p(|x|)``:
  a 1M balance should not weigh a thousand times a 1k one), missing values replaced by the
  training median, plus a 0/1 "missing" indicator for each feature that was missing in
  training (an unknown login history is itself a signal);
* one-hot columns for each categorical feature (unknown categories are all zeros);
* standardized with the training mean and scale.

The raw probability ``sigmoid(w . z + b)`` is mapped through an isotonic calibration curve
fitted on a later, held-out slice of training data and exported as interpolation points
(``np.interp`` is exactly how scikit-learn's ``IsotonicRegression`` predicts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from core.scoring.base import FeatureRecord, Reason

SIGNED_LOG_FEATURES = frozenset(
    {"balance", "income", "net_flow_1m", "net_flow_3m", "balance_change_1m", "balance_change_3m"}
)
"""Heavy-tailed features (money, and ratios to a possibly tiny balance): signed log scale."""


def signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


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

    def transform_record(self, record: FeatureRecord) -> np.ndarray:
        """Standardized design row of one record, shape ``(1, columns)``."""
        cats = self._categories([[record.get(name)] for name, _ in self.categorical], 1)
        return self.standardize(self.raw_record(record), cats)

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


def _money(v: float) -> str:
    return f"{abs(v):,.0f}"


def _pct(v: float) -> str:
    return f"{abs(v) * 100:.0f}%"


# Plain-words templates for the signals a bank's retention team recognises. Each receives
# the record's raw value (``None`` if missing) and returns text, or ``None`` when the value
# cannot be phrased as a risk (then the generic wording is used).
_TEMPLATES: dict[str, Callable[[float], str | None]] = {
    "months_since_login": lambda v: f"no login for {v:.0f} months" if v >= 1 else None,
    "logins_1m": lambda v: f"only {v:.0f} logins last month",
    "logins_3m_avg": lambda v: f"{v:.1f} logins a month over 3 months",
    "login_trend": lambda v: f"logins falling ({v:+.2f})" if v < 0 else None,
    "balance_change_1m": lambda v: f"assets down {_pct(v)} in 1 month" if v < 0 else None,
    "balance_change_3m": lambda v: f"assets down {_pct(v)} in 3 months" if v < 0 else None,
    "net_flow_1m": lambda v: f"net outflow of {_pct(v)} of assets last month" if v < 0 else None,
    "net_flow_3m": lambda v: f"net outflow of {_pct(v)} of assets in 3 months" if v < 0 else None,
    "products_dropped_3m": lambda v: f"closed {v:.0f} product(s) in 3 months" if v > 0 else None,
    "n_products": lambda v: f"holds only {v:.0f} product(s)",
    "tenure_months": lambda v: f"customer for only {v:.0f} months",
    "balance": lambda v: f"assets of {_money(v)}",
}


def describe_signal(column: str, record: FeatureRecord) -> str:
    """Plain words for one design column of one record."""
    if column.startswith("missing__"):
        return f"{column.removeprefix('missing__').replace('_', ' ')} unknown"
    if "=" in column:
        name, level = column.split("=", 1)
        return f"{name.replace('_', ' ')} {level}"
    value = as_float(record.get(column))
    if math.isnan(value):
        return f"{column.replace('_', ' ')} unknown"
    template = _TEMPLATES.get(column)
    text = template(value) if template else None
    return text or f"{column.replace('_', ' ')} {value:g}"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class LinearChurnModel:
    """Calibrated churn probability within ``horizon_months``; implements ``ChurnScorer``."""

    design: TabularDesign
    weights: np.ndarray  # per design column, in standardized space
    intercept: float
    calibration_x: np.ndarray  # raw probabilities (increasing)
    calibration_y: np.ndarray  # calibrated probabilities at those points
    horizon_months: int
    kind: str = "churn"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.feature_names = self.design.feature_names

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(raw, self.calibration_x, self.calibration_y), 0.0, 1.0)

    def raw_proba_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities (used to fit the calibration curve)."""
        z = self.design.transform_frame(frame)
        return _sigmoid((z * self.weights).sum(axis=1) + self.intercept)

    def predict_proba(self, record: FeatureRecord) -> float:
        z = self.design.transform_record(record)
        raw = _sigmoid((z * self.weights).sum(axis=1) + self.intercept)
        return float(self._calibrate(raw)[0])

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for every row of a feature frame (offline evaluation)."""
        return self._calibrate(self.raw_proba_frame(frame))

    def contributions(self, record: FeatureRecord) -> np.ndarray:
        """Each design column's share of the logit, relative to the average training customer."""
        return (self.design.transform_record(record) * self.weights)[0]

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        """Up to three signals that raise this customer's risk the most (none if none do)."""
        contrib = self.contributions(record)
        columns = self.design.columns
        order = np.argsort(-contrib, kind="stable")
        out: list[Reason] = []
        seen: set[str] = set()
        for idx in order:
            if contrib[idx] <= 0 or len(out) == 3:
                break
            column = columns[idx]
            code = column.removeprefix("missing__").split("=", 1)[0]
            if code in seen:  # value and its missing flag are one signal
                continue
            seen.add(code)
            out.append(Reason(code=code, text=describe_signal(column, record)))
        return out
