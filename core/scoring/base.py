"""Contracts between training (builds scorers), the registry (stores them) and the service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

FeatureRecord = Mapping[str, Any]
"""One customer's materialized features, as read from the online store."""


@dataclass(frozen=True)
class Reason:
    """A machine-readable reason code with a short human text."""

    code: str
    text: str


class PreparedRecord(Protocol):
    """One customer's record, scored once: the scores and, on demand, the reasons.

    What a request needs from a recommender; the work both share (the record's input row,
    the model's walk) is done once, in ``RecommenderScorer.prepare``, and kept here.
    """

    @property
    def scores(self) -> np.ndarray:
        """Propensity per product, shape ``(len(product_ids),)``; higher is better."""
        ...

    def reasons(self, product_indices: Sequence[int]) -> list[list[Reason]]:
        """1-3 reasons, derived from the model, for each of ``product_indices`` in order."""
        ...


@runtime_checkable
class RecommenderScorer(Protocol):
    """Scores every holdable product for one customer."""

    kind: str  # "recommender"
    product_ids: list[str]  # the order of the scores
    feature_names: list[str]  # features read from a record (input schema)
    popularity: np.ndarray  # share of customers who added each product (fallback order)

    def prepare(self, record: FeatureRecord) -> PreparedRecord:
        """The record scored once; its reasons come from the same work (the request path)."""
        ...

    def score(self, record: FeatureRecord) -> np.ndarray:
        """``prepare(record).scores`` (replay, smoke tests, the pyfunc wrapper)."""
        ...

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """``prepare(record).reasons([product_index])[0]``."""
        ...


class _ScoresAndReasons(Protocol):
    def score(self, record: FeatureRecord) -> np.ndarray: ...

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]: ...


@dataclass(frozen=True, eq=False, slots=True)
class ScoredRecord:
    """The :class:`PreparedRecord` of a scorer that explains one product at a time: the
    scores computed once, each product's reasons asked of the scorer when wanted."""

    scorer: _ScoresAndReasons
    record: FeatureRecord
    scores: np.ndarray

    def reasons(self, product_indices: Sequence[int]) -> list[list[Reason]]:
        return [self.scorer.reasons(self.record, int(j)) for j in product_indices]


class PreparedFromScores:
    """Mixin: ``prepare`` for a scorer whose ``score`` and ``reasons`` share no work worth
    keeping (the legacy linear model, test doubles), so it needs only those two."""

    def prepare(self: _ScoresAndReasons, record: FeatureRecord) -> PreparedRecord:
        return ScoredRecord(self, record, self.score(record))


@runtime_checkable
class ChurnScorer(Protocol):
    """Calibrated probability that a customer leaves within the model's horizon."""

    kind: str  # "churn"
    feature_names: list[str]

    def predict_proba(self, record: FeatureRecord) -> float: ...

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        """Top signals raising the risk, in plain words."""
        ...


def churn_assessment(scorer: ChurnScorer, record: FeatureRecord) -> tuple[float, list[Reason]]:
    """The churn probability of ``record`` and its reasons, as the request path and the
    precomputed scores both need them. ``assess`` (LinearChurnModel) gives both from one
    pass over the record; any other ChurnScorer is asked twice. Raises ``ValueError`` when
    the model returns something that is not a probability."""
    assess = getattr(scorer, "assess", None)
    if callable(assess):
        probability, reasons = assess(record)
        probability = float(probability)
    else:
        probability = float(scorer.predict_proba(record))
        reasons = None
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"churn model returned {probability!r}, not a probability")
    if reasons is None:
        reasons = scorer.reasons(record)
    return probability, list(reasons)
