"""Fakes and hypothesis strategies for property tests of ``decide``: a recommender and a
churn model returning chosen values, raw feature records (broken values included), product
eligibility rules and model scores (NaN and infinities included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import strategies as st

from core.catalogue import Catalogue, Eligibility
from core.scoring.base import FeatureRecord, PreparedFromScores, Reason

TODAY = date(2026, 11, 15)


@dataclass
class ChosenScores(PreparedFromScores):
    """A recommender returning the scores hypothesis chose."""

    product_ids: list[str]
    values: list[float]
    popularity: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    kind: str = "recommender"

    def score(self, record: FeatureRecord) -> np.ndarray:
        return np.array(self.values, dtype=np.float64)

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        return [Reason("chosen", f"score {self.values[product_index]}")]


@dataclass
class ChosenChurn:
    probability: float
    feature_names: list[str] = field(default_factory=list)
    kind: str = "churn"

    def predict_proba(self, record: FeatureRecord) -> float:
        return self.probability

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        return []


# -- strategies ---------------------------------------------------------------------------


@st.composite
def eligibility(draw: st.DrawFn) -> Eligibility:
    min_age = draw(st.none() | st.integers(0, 90))
    max_age = draw(st.none() | st.integers(min_age or 0, 120))
    return Eligibility(
        min_age=min_age,
        max_age=max_age,
        residents_only=draw(st.booleans()),
        min_income=draw(st.none() | st.floats(0, 200_000)),
        min_assets=draw(st.none() | st.floats(0, 500_000)),
    )


def garbage() -> st.SearchStrategy[Any]:
    """Values of the wrong type a broken record might hold."""
    return st.sampled_from(["", "yes", "3", True, [], {}])


@st.composite
def records(draw: st.DrawFn, product_ids: list[str]) -> dict[str, Any]:
    assessed = draw(st.none() | st.dates(TODAY - timedelta(days=1500), TODAY + timedelta(60)))
    return {
        "age": draw(st.none() | st.integers(0, 100) | st.floats(0, 100) | garbage()),
        "risk_level": draw(st.none() | st.integers(0, 6) | st.sampled_from([3.0, 2.5]) | garbage()),
        "risk_assessed_on": (
            assessed.isoformat() if assessed else draw(st.none() | st.just("not a date"))
        ),
        "resident": draw(st.none() | st.booleans() | garbage()),
        "income": draw(st.none() | st.floats(-1e6, 1e6) | garbage()),
        "balance": draw(st.none() | st.floats(-1e6, 1e7) | garbage()),
        "held": draw(st.lists(st.sampled_from([*product_ids, "not_in_catalogue"]), unique=True)),
    }


@st.composite
def scorers(draw: st.DrawFn, catalogue: Catalogue) -> ChosenScores:
    holdable = [p.id for p in catalogue.holdable]
    known = draw(st.permutations(holdable)) if holdable else []
    known = known[: draw(st.integers(0, len(known)))]
    values = draw(st.lists(st.floats(allow_nan=True), min_size=len(known), max_size=len(known)))
    popularity = draw(st.lists(st.floats(0, 1), min_size=len(known), max_size=len(known)))
    return ChosenScores(list(known), values, np.array(popularity))
