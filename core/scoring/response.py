"""Offer response at request time: P(accept | customer, offer, channel, contact history).

The model reads the feature mapping of ``features.response_features`` (the same function
offline and online) and turns it into one row of floats with :class:`ResponseDesign`
(numbers as they are, ``None`` -> NaN; each categorical level seen in training -> a 0/1
column, an unseen level -> all zeros). The fitted scikit-learn estimator (a
``CalibratedClassifierCV`` around gradient boosting or a logistic regression, chosen by
cross-validation in ``training/response.py``) scores that row. No pandas on this path: one
numpy row per call. Why a design object: the column order and the levels are frozen with
the model, so a new job title online cannot shift a column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ResponseScorer(Protocol):
    """Calibrated probability that the customer accepts the offer now on this channel."""

    kind: str  # "response"
    feature_names: list[str]

    def accept_probability(self, features: Mapping[str, Any]) -> float:
        """P(accept) of one feature mapping (``features.response_features``)."""
        ...

    def accept_probabilities(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(accept) of many feature mappings in one call (the service scores every
        candidate of a request at once: one ``predict_proba``, not one per product)."""
        ...


@dataclass(frozen=True)
class ResponseDesign:
    """Feature mapping -> float row: numeric columns, then one 0/1 column per level."""

    numeric: tuple[str, ...]
    levels: tuple[tuple[str, tuple[str, ...]], ...]  # (categorical feature, its levels)

    @classmethod
    def fit(
        cls, rows: Sequence[Mapping[str, Any]], numeric: Sequence[str], categorical: Sequence[str]
    ) -> ResponseDesign:
        """Levels of each categorical feature as seen in ``rows`` (sorted: a stable order);
        a numeric feature unknown in every row is left out (nothing to learn from it, and
        scikit-learn's gradient boosting fails on an all-NaN column)."""
        known = tuple(n for n in numeric if any(isinstance(r[n], int | float) for r in rows))
        return cls(
            known,
            tuple((name, tuple(sorted({str(r[name]) for r in rows}))) for name in categorical),
        )

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *(f"{name}={level}" for name, lv in self.levels for level in lv)]

    def row(self, features: Mapping[str, Any]) -> list[float]:
        """One row in :attr:`columns` order; a missing or non-finite number is NaN."""
        values: list[float] = []
        for name in self.numeric:
            value = features.get(name)
            number = float(value) if isinstance(value, int | float) else math.nan
            values.append(number if math.isfinite(number) else math.nan)
        for name, levels in self.levels:
            value = str(features.get(name))
            values.extend(1.0 if value == level else 0.0 for level in levels)
        return values

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.array([self.row(r) for r in rows], dtype=np.float64).reshape(
            len(rows), len(self.columns)
        )


@dataclass
class ResponseModel:
    """Implements :class:`ResponseScorer` with a fitted probabilistic classifier."""

    design: ResponseDesign
    estimator: Any  # fitted; predict_proba(n x columns) -> n x 2
    algorithm: str
    kind: str = "response"
    feature_names: list[str] = field(default_factory=list)

    def accept_probability(self, features: Mapping[str, Any]) -> float:
        row = np.array([self.design.row(features)], dtype=np.float64)
        return float(self.estimator.predict_proba(row)[0, 1])

    def accept_probabilities(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Many feature mappings in one batch (training, evaluation, the service's
        candidates of one request): the same numbers as ``predict_proba``, through
        :func:`calibrated_average` when the estimator is a calibration (isotonic or
        sigmoid) as both candidates of ``training.response`` are."""
        matrix = self.design.matrix(rows)
        lean = calibrated_average(self.estimator, matrix)
        if lean is not None:
            return lean
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1])


def _raw_scores(base: Any, matrix: np.ndarray) -> np.ndarray | None:
    """What ``CalibratedClassifierCV`` calibrates for ``base``: its decision function, else
    its class-1 probability; a plain soft vote (no weights) averages its members' class-1
    probabilities itself. None for anything else."""
    if hasattr(base, "decision_function"):
        return np.asarray(base.decision_function(matrix), dtype=np.float64).reshape(-1)
    members = getattr(base, "estimators_", None)
    if getattr(base, "voting", None) == "soft" and getattr(base, "weights", 0) is None:
        if not members or not all(hasattr(m, "predict_proba") for m in members):
            return None
        total = np.zeros(len(matrix), dtype=np.float64)
        for member in members:
            total += np.asarray(member.predict_proba(matrix)[:, 1], dtype=np.float64)
        return total / len(members)
    if hasattr(base, "predict_proba") and members is None:
        return np.asarray(base.predict_proba(matrix)[:, 1], dtype=np.float64).reshape(-1)
    return None


def _calibrate(calibrator: Any, raw: np.ndarray, method: str) -> np.ndarray | None:
    if method == "isotonic":
        return np.interp(raw, calibrator.X_thresholds_, calibrator.y_thresholds_)
    if method == "sigmoid":
        return 1.0 / (1.0 + np.exp(calibrator.a_ * raw + calibrator.b_))
    return None


def calibrated_average(estimator: Any, matrix: np.ndarray) -> np.ndarray | None:
    """P(class 1) of a fitted binary ``CalibratedClassifierCV`` (isotonic or sigmoid)
    without its per-call bookkeeping, or None for any other estimator.

    Why: for one request's 20 rows, ``predict_proba`` spent about two thirds of its time
    validating inputs and encoding labels for each calibrated copy (and, for a soft vote,
    for the vote), not predicting. This is what it computes for two classes: each copy's
    raw score (:func:`_raw_scores`) mapped through its calibrator (isotonic: ``np.interp``
    on the fitted thresholds, clipped at the ends; sigmoid: ``1 / (1 + exp(a s + b))``),
    then the mean over the copies. ``tests/core/test_response_batch.py`` checks equality
    with ``predict_proba`` on both fitted candidates.
    """
    copies = getattr(estimator, "calibrated_classifiers_", None)
    method = getattr(estimator, "method", None)
    if method not in ("isotonic", "sigmoid") or not copies:
        return None
    if len(getattr(estimator, "classes_", ())) != 2:
        return None
    total = np.zeros(len(matrix), dtype=np.float64)
    for copy in copies:
        if len(copy.calibrators) != 1:
            return None
        raw = _raw_scores(copy.estimator, matrix)
        calibrated = None if raw is None else _calibrate(copy.calibrators[0], raw, method)
        if calibrated is None:
            return None
        total += calibrated
    return total / len(copies)
