"""Scorers built by hand, whose every answer can be worked out from the catalogue.

``FixedScores`` / ``FixedChurn``: test doubles of the scorer protocols for the pure decision
function. ``popularity_recommender`` / ``login_churn_model`` / ``tiny_churn_model``: the
project's real scorer classes with hand-set weights, registered in real MLflow registries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.scoring.base import FeatureRecord, PreparedFromScores, Reason
from core.scoring.churn import LinearChurnModel, TabularDesign
from core.scoring.legacy import TwoStageRecommender
from features.online_store import FeatureSetInfo

NOW = datetime.now(UTC)
FEATURE_SET = FeatureSetInfo("v1", NOW.date(), NOW, 1, [], "t")


@dataclass
class FixedScores(PreparedFromScores):
    """A recommender giving every product the same propensity unless told otherwise."""

    product_ids: list[str]
    overrides: dict[str, float] = field(default_factory=dict)
    default: float = 0.1
    feature_names: list[str] = field(default_factory=list)
    kind: str = "recommender"
    popularity: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.popularity = np.full(len(self.product_ids), 0.01)

    def score(self, record: FeatureRecord) -> np.ndarray:
        return np.array([self.overrides.get(p, self.default) for p in self.product_ids])

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        return [Reason("model", "fixed")]


@dataclass
class FixedChurn:
    probability: float
    feature_names: list[str] = field(default_factory=list)
    kind: str = "churn"

    def predict_proba(self, record: FeatureRecord) -> float:
        return self.probability

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        return [Reason("months_since_login", "no login")]


def popularity_recommender(catalogue: Catalogue) -> TwoStageRecommender:
    """Scores follow popularity, which rises along the catalogue's file order."""
    ids = [p.id for p in catalogue.holdable]
    n = len(ids)
    no_features = TabularDesign((), (), (), np.zeros(0), np.zeros(0), np.zeros(0))
    return TwoStageRecommender(
        product_ids=ids,
        popularity=np.linspace(0.01, 0.30, n),
        projection=np.zeros((n, n)),
        customer_design=no_features,
        interaction_weights=np.zeros((n, 0)),
        pair_mean=np.zeros(3),
        pair_scale=np.ones(3),
        pair_weights=np.array([0.0, 0.0, 1.0]),
        intercept=0.0,
    )


def login_churn_model() -> LinearChurnModel:
    design = TabularDesign(("months_since_login",), (), (), np.zeros(1), np.zeros(1), np.ones(1))
    return LinearChurnModel(
        design=design,
        weights=np.array([2.0]),
        intercept=-3.0,
        calibration_x=np.array([0.0, 1.0]),
        calibration_y=np.array([0.0, 1.0]),
        horizon_months=3,
    )


def tiny_churn_model(weight: float) -> LinearChurnModel:
    """A two-feature churn model built by hand (what training would export)."""
    frame = pd.DataFrame(
        {
            "months_since_login": [0.0, 1.0, 2.0, 5.0, None],
            "tier": ["mass", "affluent", "mass", "private", None],
        }
    )
    design = TabularDesign.fit(frame, ["months_since_login"], {"tier": ["mass", "affluent"]})
    return LinearChurnModel(
        design=design,
        weights=np.array([weight, 0.5, 0.1, -0.1]),
        intercept=-1.0,
        calibration_x=np.array([0.0, 1.0]),
        calibration_y=np.array([0.0, 1.0]),
        horizon_months=3,
    )
