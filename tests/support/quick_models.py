"""A real recommender fitted quickly: several test modules need one with pair trees, and
fitting it is the costliest part of their set-up, so ``tests/conftest.py`` fits it once per
run (the ``quick_recommender`` fixture)."""

from __future__ import annotations

from datetime import date

from core.catalogue import Catalogue
from core.scoring.boosted import BoostedRecommender
from features.synthetic import generate_bank
from training.evaluate_recommender import evaluate_tables
from training.labels import snapshot_months
from training.recommender import RecommenderConfig

END_MONTH = date(2025, 12, 31)
QUICK = RecommenderConfig(max_iter=15, max_leaf_nodes=7, min_samples_leaf=20, bags=1)
"""Few, small trees: the tests check how a model is walked, pickled and served, not its
quality."""


def fit_quick_recommender(catalogue: Catalogue) -> BoostedRecommender:
    """Fitted on 3,000 customers x 6 months (seed 8), the last month as the target."""
    bank = generate_bank(customers=3000, months=6, seed=8, catalogue=catalogue, end_month=END_MONTH)
    months = snapshot_months(bank)
    fitted = evaluate_tables(bank, catalogue, months[-2].date(), months[-1].date(), QUICK).fitted
    assert fitted.scorer.pair_trees is not None and fitted.scorer.pair_weight > 0
    return fitted.scorer
