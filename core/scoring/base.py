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


@runtime_checkable
class RecommenderScorer(Protocol):
    """Scores every holdable product for one customer."""

    kind: str  # "recommender"
    product_ids: list[str]  # the order of ``score``'s output
    feature_names: list[str]  # features read from a record (input schema)
    popularity: np.ndarray  # share of customers who added each product (fallback order)

    def score(self, record: FeatureRecord) -> np.ndarray:
        """Propensity per product, shape ``(len(product_ids),)``; higher is better."""
        ...

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """1-3 reasons, derived from the model, for one product's score."""
        ...


@runtime_checkable
class BatchReasons(Protocol):
    """A recommender that explains several offers in one pass (one input row, one walk).

    Separate from :class:`RecommenderScorer` so scorers (and test doubles) with only
    ``reasons`` still qualify; call :func:`reasons_for`, which picks the fast path.
    """

    def reasons_many(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> list[list[Reason]]:
        """``reasons(record, j)`` for each ``j`` of ``product_indices``, in that order."""
        ...


def reasons_for(
    scorer: RecommenderScorer, record: FeatureRecord, product_indices: Sequence[int]
) -> list[list[Reason]]:
    """The reasons of several offers: one batched call when the scorer supports it,
    otherwise ``reasons`` per offer (same results either way)."""
    if isinstance(scorer, BatchReasons):
        return scorer.reasons_many(record, product_indices)
    return [scorer.reasons(record, j) for j in product_indices]


@runtime_checkable
class ChurnScorer(Protocol):
    """Calibrated probability that a customer leaves within the model's horizon."""

    kind: str  # "churn"
    feature_names: list[str]

    def predict_proba(self, record: FeatureRecord) -> float: ...

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        """Top signals raising the risk, in plain words."""
        ...
