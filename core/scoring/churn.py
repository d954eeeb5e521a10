"""Churn risk at request time: a calibrated logistic regression exported to numpy arrays.

Training (``training/churn.py``) fits scikit-learn models and copies their learned numbers
into :class:`LinearChurnModel`; scoring one record is then a handful of numpy operations.

The design matrix (imputation, signed logs, one-hots, standardization) lives in
:mod:`core.scoring.design`; ``__all__`` re-exports it, so a churn model and its design are
imported from one module.

The raw probability ``sigmoid(w . z + b)`` is mapped through an isotonic calibration curve
fitted on a later, held-out slice of training data and exported as interpolation points
(``np.interp`` is exactly how scikit-learn's ``IsotonicRegression`` predicts).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd

from core.scoring.base import FeatureRecord, Reason
from core.scoring.design import (
    SIGNED_LOG_FEATURES,
    TabularDesign,
    as_float,
    column_as_float,
    floats,
    signed_log,
)

__all__ = [
    "SIGNED_LOG_FEATURES",
    "ChurnBand",
    "LinearChurnModel",
    "TabularDesign",
    "as_float",
    "churn_band",
    "churn_bands",
    "column_as_float",
    "floats",
    "signed_log",
]


class ChurnBand(StrEnum):
    """Retention urgency; thresholds come from settings (``churn_*_threshold``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def churn_band(probability: float, medium_threshold: float, high_threshold: float) -> ChurnBand:
    """``high`` from ``high_threshold`` up, ``medium`` from ``medium_threshold`` up, else low."""
    if probability >= high_threshold:
        return ChurnBand.HIGH
    if probability >= medium_threshold:
        return ChurnBand.MEDIUM
    return ChurnBand.LOW


def churn_bands(
    probability: np.ndarray, medium_threshold: float, high_threshold: float
) -> np.ndarray:
    """:func:`churn_band` of every element (object array of band names)."""
    return np.where(
        probability >= high_threshold,
        ChurnBand.HIGH.value,
        np.where(probability >= medium_threshold, ChurnBand.MEDIUM.value, ChurnBand.LOW.value),
    ).astype(object)


def _money(v: float) -> str:
    return f"{abs(v):,.0f}"


def _pct(v: float) -> str:
    return f"{abs(v) * 100:.0f}%"


def _months(v: float) -> str:
    return f"{v:.0f} month" + ("" if round(v) == 1 else "s")


@dataclass(frozen=True)
class _Signal:
    """When a feature's value is a risk (vs the training median) and how to say so."""

    risky: Callable[[np.ndarray | float, float], np.ndarray | bool]  # a column or one value
    text: Callable[[float], str]


# A model weight alone does not make a reason: with correlated inputs a feature can push the
# logit up while its value is reassuring (many logins). A signal is only named when its value
# is on the risky side too; features without an entry here are named on their contribution.
_SIGNALS: dict[str, _Signal] = {
    "months_since_login": _Signal(lambda v, m: v >= 1, lambda v: f"no login for {_months(v)}"),
    "logins_1m": _Signal(lambda v, m: v < m, lambda v: f"only {v:.0f} logins last month"),
    "logins_3m_avg": _Signal(
        lambda v, m: v < m, lambda v: f"only {v:.1f} logins a month over 3 months"
    ),
    "login_trend": _Signal(
        lambda v, m: v < 0, lambda v: f"logins down by {abs(v):.1f} a month on the 3 before"
    ),
    "balance_change_1m": _Signal(lambda v, m: v < 0, lambda v: f"assets down {_pct(v)} in 1 month"),
    "balance_change_3m": _Signal(
        lambda v, m: v < 0, lambda v: f"assets down {_pct(v)} in 3 months"
    ),
    "net_flow_1m": _Signal(
        lambda v, m: v < 0, lambda v: f"net outflow of {_pct(v)} of assets last month"
    ),
    "net_flow_3m": _Signal(
        lambda v, m: v < 0, lambda v: f"net outflow of {_pct(v)} of assets in 3 months"
    ),
    "products_dropped_3m": _Signal(
        lambda v, m: v > 0, lambda v: f"closed {v:.0f} product(s) in 3 months"
    ),
    "products_added_3m": _Signal(lambda v, m: v < 1, lambda v: "no new product in 3 months"),
    "n_products": _Signal(lambda v, m: v < m, lambda v: f"holds only {v:.0f} product(s)"),
    "tenure_months": _Signal(lambda v, m: v < m, lambda v: f"customer for only {_months(v)}"),
    "balance": _Signal(lambda v, m: v < m, lambda v: f"low assets ({_money(v)})"),
}


MIN_REASON_LOGIT = 0.2
"""A signal must raise the log-odds by at least this much (odds x1.22) to be named: smaller
pushes are noise to a retention agent, and a low-risk customer should hear none of them."""


def _generic(name: str, value: float) -> str:
    return f"{name.replace('_', ' ')} {value:g}"


def _numeric_reason(code: str, value: float) -> Reason:
    """The reason a numeric signal gives: its own text, or ``<name> unknown`` when missing."""
    if math.isnan(value):
        return Reason(code=code, text=f"{code.replace('_', ' ')} unknown")
    signal = _SIGNALS.get(code)
    return Reason(code=code, text=signal.text(value) if signal else _generic(code, value))


def _level_reason(code: str, level: str | None) -> Reason:
    """The reason a categorical signal gives: its level, ``unknown`` when none is set."""
    shown = level if level is not None else "unknown"
    return Reason(code=code, text=f"{code.replace('_', ' ')} {shown}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _interp_one(x: float, xp: list[float], fp: list[float]) -> float:
    """``np.interp(x, xp, fp)`` of one point: numpy's branches and arithmetic, same bits."""
    if math.isnan(x):
        return x
    j = bisect_right(xp, x) - 1  # xp[j] <= x < xp[j + 1], as numpy's binary search
    if j < 0:
        return fp[0]
    if j >= len(xp) - 1:
        return fp[-1]
    if xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    y = slope * (x - xp[j]) + fp[j]
    if math.isnan(y):  # numpy then tries from the right-hand point
        y = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(y) and fp[j] == fp[j + 1]:
            y = fp[j]
    return y


def _clip_one(p: float) -> float:
    """``np.clip(p, 0.0, 1.0)`` of one float (NaN and ``-0.0`` pass through, as there)."""
    if p < 0.0:
        return 0.0
    if p > 1.0:
        return 1.0
    return p


class _OneRow(NamedTuple):
    """A model's numbers as Python lists, for :meth:`LinearChurnModel._explain_record`."""

    weights: list[float]
    calibration_x: list[float]
    calibration_y: list[float]
    level_names: tuple[tuple[str, ...], ...]  # per categorical feature
    level_offsets: tuple[int, ...]  # its first one-hot column among the categories
    signal_tests: dict[int, tuple[str, float]]  # column -> (feature, median): _signal_tests


@dataclass(frozen=True)
class _Explainer:
    """Per-signal contributions and the risk test, vectorised over rows.

    A signal is one raw feature: its value column plus its "missing" flag, or all one-hot
    columns of a categorical. Contributions are summed column by column (no matrix product),
    so one row scored alone and the same row in a batch give bit-identical numbers.
    """

    codes: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, design: TabularDesign) -> _Explainer:
        columns = design.columns
        codes: list[str] = []
        groups: list[tuple[int, ...]] = []
        for j, name in enumerate(design.numeric):
            flag = f"missing__{name}"
            groups.append((j, columns.index(flag)) if flag in columns else (j,))
            codes.append(name)
        for name, levels in design.categorical:
            groups.append(tuple(columns.index(f"{name}={level}") for level in levels))
            codes.append(name)
        return cls(tuple(codes), tuple(groups))

    @cached_property
    def _padded_groups(self) -> np.ndarray:
        """``groups`` as a ``(signals, widest group)`` index array, padded with ``-1``."""
        width = max((len(g) for g in self.groups), default=0)
        out = np.full((len(self.groups), width), -1, dtype=np.intp)
        for k, group in enumerate(self.groups):
            out[k, : len(group)] = group
        return out

    def totals(self, contributions: np.ndarray) -> np.ndarray:
        """Per signal, its columns' contributions added left to right.

        One vectorised pass per position in a group rather than one per column: padding
        points at an appended zero column, and ``x + 0.0 == x`` exactly, so the sums are
        bit-identical to adding each group's columns one by one.
        """
        rows = contributions.shape[0]
        padded = np.hstack([contributions, np.zeros((rows, 1))])
        out = np.zeros((rows, len(self.codes)))
        for position in self._padded_groups.T:
            out += padded[:, position]
        return out


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

    @cached_property
    def _explainer(self) -> _Explainer:
        return _Explainer.of(self.design)

    @cached_property
    def _signal_tests(self) -> list[tuple[int, str, float]]:
        """(column, feature, training median) of every numeric feature with a risk test.

        Names, not the signals: a cached value is pickled with the model, lambdas cannot be.
        """
        design = self.design
        return [
            (k, name, float(design.medians[k]))
            for k, name in enumerate(design.numeric)
            if name in _SIGNALS
        ]

    @cached_property
    def _one_row(self) -> _OneRow:
        design = self.design
        level_names = tuple(levels for _, levels in design.categorical)
        offsets = np.cumsum([0] + [len(levels) for levels in level_names]).tolist()
        return _OneRow(
            weights=np.asarray(self.weights, dtype=np.float64).tolist(),
            calibration_x=np.asarray(self.calibration_x, dtype=np.float64).tolist(),
            calibration_y=np.asarray(self.calibration_y, dtype=np.float64).tolist(),
            level_names=level_names,
            level_offsets=tuple(offsets[:-1]),
            signal_tests={k: (name, median) for k, name, median in self._signal_tests},
        )

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(raw, self.calibration_x, self.calibration_y), 0.0, 1.0)

    def _raw_proba(self, z: np.ndarray) -> np.ndarray:
        return _sigmoid((z * self.weights).sum(axis=1) + self.intercept)

    def raw_proba_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities (used to fit the calibration curve)."""
        return self._raw_proba(self.design.transform_frame(frame))

    def predict_proba(self, record: FeatureRecord) -> float:
        raw = self._raw_proba(self.design.transform_record(record))
        return float(self._calibrate(raw)[0])

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for every row of a feature frame (offline evaluation)."""
        return self._calibrate(self.raw_proba_frame(frame))

    def contributions(self, record: FeatureRecord) -> np.ndarray:
        """Each design column's share of the logit, relative to the average training customer."""
        return (self.design.transform_record(record) * self.weights)[0]

    # -- reasons ----------------------------------------------------------------------------

    def _explain(
        self, raw: np.ndarray, categories: np.ndarray, max_reasons: int
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """Calibrated probabilities and reasons for rows given as raw values and one-hots."""
        design, explainer = self.design, self._explainer
        proba, ranked, chosen = self._ranked(raw, categories, max_reasons)
        n_numeric = len(design.numeric)
        level_names = [levels for _, levels in design.categorical]
        offsets = np.cumsum([0] + [len(levels) for levels in level_names])
        reasons: list[list[Reason]] = []
        for row in range(raw.shape[0]):
            out: list[Reason] = []
            for k, ok in zip(ranked[row], chosen[row], strict=True):
                if not ok:
                    break
                code = explainer.codes[k]
                if k < n_numeric:
                    out.append(_numeric_reason(code, float(raw[row, k])))
                else:
                    c = k - n_numeric
                    hot = np.flatnonzero(categories[row, offsets[c] : offsets[c + 1]])
                    out.append(_level_reason(code, level_names[c][hot[0]] if hot.size else None))
            reasons.append(out)
        return proba, reasons

    def _ranked(
        self, raw: np.ndarray, categories: np.ndarray, max_reasons: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated probabilities, the ``(rows, max_reasons)`` signals ranked by their
        contribution, and whether each is named (a prefix of each row)."""
        design = self.design
        z = design.standardize(raw, categories)
        proba = self._calibrate(self._raw_proba(z))
        explainer = self._explainer
        totals = explainer.totals(z * self.weights)
        eligible = totals >= MIN_REASON_LOGIT
        if raw.shape[0] == 1:  # the request path: plain float comparisons, same answers
            values = raw[0].tolist()
            for k, name, median in self._signal_tests:
                value = values[k]
                risky = _SIGNALS[name].risky
                if eligible[0, k] and not (math.isnan(value) or risky(value, median)):
                    eligible[0, k] = False
        else:
            missing = np.isnan(raw)
            with np.errstate(invalid="ignore"):
                for k, name, median in self._signal_tests:
                    flagged = _SIGNALS[name].risky(raw[:, k], median)
                    eligible[:, k] &= missing[:, k] | np.asarray(flagged, dtype=bool)
        ranked = np.argsort(np.where(eligible, -totals, np.inf), axis=1, kind="stable")
        ranked = ranked[:, :max_reasons]
        chosen = np.logical_and.accumulate(np.take_along_axis(eligible, ranked, axis=1), axis=1)
        return proba, ranked, chosen

    def explain_columns(
        self, frame: pd.DataFrame, max_reasons: int = 3
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """:meth:`explain_frame` as columns: probabilities, then per reason slot an array of
        codes and one of texts (``""`` where a customer has fewer reasons).

        The same reasons as :meth:`explain_frame`, without a Python loop over rows: each
        distinct value of a signal (compared bit for bit) is worded once, by the same
        function, and the words are spread to every row that has it.
        """
        design, explainer = self.design, self._explainer
        raw, categories = design.raw_frame(frame), design.categories_frame(frame)
        proba, ranked, chosen = self._ranked(raw, categories, max_reasons)
        n_numeric = len(design.numeric)
        level_names = [levels for _, levels in design.categorical]
        offsets = np.cumsum([0] + [len(levels) for levels in level_names])
        codes_of = np.array([*explainer.codes, ""], dtype=object)
        all_codes: list[np.ndarray] = []
        all_texts: list[np.ndarray] = []
        for slot in range(ranked.shape[1]):
            signal = np.where(chosen[:, slot], ranked[:, slot], len(explainer.codes))
            texts = np.full(len(signal), "", dtype=object)
            for k in np.unique(signal[signal < len(explainer.codes)]).tolist():
                rows = np.flatnonzero(signal == k)
                code = explainer.codes[k]
                if k < n_numeric:
                    bits = np.ascontiguousarray(raw[rows, k]).view(np.int64)
                    distinct, inverse = np.unique(bits, return_inverse=True)
                    words = np.array(
                        [_numeric_reason(code, float(v)).text for v in distinct.view(np.float64)],
                        dtype=object,
                    )
                else:
                    c = k - n_numeric
                    block = categories[rows, offsets[c] : offsets[c + 1]] != 0
                    inverse = np.where(block.any(axis=1), block.argmax(axis=1), len(level_names[c]))
                    options = [*level_names[c], None]
                    words = np.array(
                        [_level_reason(code, level).text for level in options], dtype=object
                    )
                texts[rows] = words[inverse]
            all_codes.append(codes_of[signal])
            all_texts.append(texts)
        return proba, all_codes, all_texts

    def _explain_record(
        self, record: FeatureRecord, max_reasons: int
    ) -> tuple[float, list[Reason]]:
        """:meth:`_explain` of one record, in Python floats and lists.

        Why a second path: on one row the work is tiny, and the fixed cost of each of the
        dozens of numpy calls on 1-row arrays is nearly all of the cost; plain floats and
        lists skip it. The answers are the same: each float is the same IEEE operation in
        the same order, and the steps whose bits numpy owns stay in numpy (``log1p`` and
        ``exp``, whose SIMD kernels can differ from ``math`` in the last bit; the logit's
        pairwise sum). ``tests/core/test_churn_fast_path.py`` holds it to the batch arithmetic.
        """
        design, one = self.design, self._one_row
        raw = design.raw_values(record)
        categories = design.categories_values(record)
        z = design.standardize_values(raw, categories)
        contributions = [zj * wj for zj, wj in zip(z, one.weights, strict=True)]
        logit = float(np.add.reduce(np.array(contributions, dtype=np.float64))) + self.intercept
        raw_proba = 1.0 / (1.0 + float(np.exp(-logit)))
        proba = _clip_one(_interp_one(raw_proba, one.calibration_x, one.calibration_y))

        explainer, tests = self._explainer, one.signal_tests
        eligible: list[tuple[float, int]] = []  # (-total, signal)
        for k, group in enumerate(explainer.groups):
            total = 0.0
            for j in group:  # left to right from 0.0, as _Explainer.totals
                total += contributions[j]
            if total >= MIN_REASON_LOGIT:
                test = tests.get(k)
                value = raw[k] if test else math.nan
                if not test or math.isnan(value) or _SIGNALS[test[0]].risky(value, test[1]):
                    eligible.append((-total, k))
        # a stable argsort of -totals, cut as ranked[:, :max_reasons] cuts all signals ranked
        eligible.sort(key=lambda item: item[0])
        ranked = [k for _, k in eligible[: len(explainer.codes[:max_reasons])]]

        n_numeric = len(design.numeric)
        reasons: list[Reason] = []
        for k in ranked:
            code = explainer.codes[k]
            if k < n_numeric:
                reasons.append(_numeric_reason(code, raw[k]))
            else:
                c = k - n_numeric
                levels, offset = one.level_names[c], one.level_offsets[c]
                hot = [i for i in range(len(levels)) if categories[offset + i]]
                reasons.append(_level_reason(code, levels[hot[0]] if hot else None))
        return proba, reasons

    def assess(self, record: FeatureRecord, max_reasons: int = 3) -> tuple[float, list[Reason]]:
        """:meth:`predict_proba` and :meth:`reasons` of one record from one design row.

        The request path needs both; this transforms the record once (same numbers).
        """
        return self._explain_record(record, max_reasons)

    def reasons(self, record: FeatureRecord, max_reasons: int = 3) -> list[Reason]:
        """Up to three signals that raise this customer's risk the most (none if none do).

        A signal qualifies when it raises the log-odds above the average training customer by
        at least ``MIN_REASON_LOGIT`` AND its value is on the risky side (fewer logins than
        usual, money out, ...): a low-risk customer may get no reason at all.
        """
        return self._explain_record(record, max_reasons)[1]

    def explain_frame(
        self, frame: pd.DataFrame, max_reasons: int = 3
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """Probabilities and reasons for every row of a feature frame (batch scoring).

        The same arithmetic as :meth:`predict_proba` / :meth:`reasons` on each row's record.
        """
        design = self.design
        return self._explain(design.raw_frame(frame), design.categories_frame(frame), max_reasons)
