"""Contracts between training (builds scorers), the registry (stores them) and the service."""

from __future__ import annotations

from collections.abc import Mapping
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
class ChurnScorer(Protocol):
    """Calibrated probability that a customer leaves within the model's horizon."""

    kind: str  # "churn"
    feature_names: list[str]

    def predict_proba(self, record: FeatureRecord) -> float: ...

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        """Top signals raising the risk, in plain words."""
        ...
