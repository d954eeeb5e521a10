"""Offer-response models for the service tests: the project's real ``ResponseModel`` fitted
on hand-made contacts whose acceptance falls with every showing (contact fatigue), so the
fatigue the tests check is in the data, not assumed of the shipped model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from core.scoring.response import ResponseDesign, ResponseModel
from features.response_features import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    NUMERIC_FEATURES,
    contact_features,
)
from tests.support.records import adult

ACCEPTED_OF_40 = (20, 14, 10, 6, 4, 2)
"""Acceptances among 40 contacts at the 1st, 2nd, ... 6th showing of an offer."""


def fatigue_model(accepted_of_40: tuple[int, ...] = ACCEPTED_OF_40) -> ResponseModel:
    """A logistic response model fitted on 40 contacts per showing (1st ... 6th), half on
    app and half on push with the same rates: fatigue, and no channel effect of its own."""
    when = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
    base = contact_features(adult(), "credit_card", "app", [], when)
    rows: list[dict[str, Any]] = []
    target: list[int] = []
    for shown, accepted in enumerate(accepted_of_40, start=1):
        for n in range(40):
            channel = "app" if n % 2 else "push"
            rows.append({**base, "times_shown": float(shown), "channel": channel})
            target.append(1 if n < accepted else 0)
    design = ResponseDesign.fit(rows, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    estimator = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        LogisticRegression(max_iter=1000),
    )
    estimator.fit(design.matrix(rows), np.array(target))
    return ResponseModel(design, estimator, "logistic_regression", feature_names=[*FEATURE_NAMES])


@dataclass
class ConstantResponse:
    """A fake response scorer (pure arbitration logic): every row gets ``value``; ``fail``
    raises instead."""

    value: float = 1.0
    fail: bool = False
    kind: str = "response"
    feature_names: list[str] = field(default_factory=lambda: [*FEATURE_NAMES])

    def accept_probability(self, features: Any) -> float:
        return self.value

    def accept_probabilities(self, rows: Any) -> np.ndarray:
        if self.fail:
            raise RuntimeError("broken response model")
        return np.full(len(rows), self.value)
