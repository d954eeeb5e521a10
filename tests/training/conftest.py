"""Fixtures shared by the batch-scoring tests and their Spark twin."""

from __future__ import annotations

import pytest

from core.catalogue import Catalogue
from core.scoring.churn import LinearChurnModel
from core.tables import Tables
from features.synthetic import generate_bank
from tests.support.small_banks import AS_OF
from training.churn import ChurnConfig, fit_churn
from training.datasets import churn_split


@pytest.fixture(scope="module")
def scoring_bank(catalogue: Catalogue) -> Tables:
    """1,200 customers x 8 months (seed 3)."""
    return generate_bank(customers=1200, months=8, seed=3, catalogue=catalogue, end_month=AS_OF)


@pytest.fixture(scope="module")
def scoring_model(scoring_bank: Tables, catalogue: Catalogue) -> LinearChurnModel:
    """A churn model fitted on ``scoring_bank``."""
    return fit_churn(churn_split(scoring_bank, catalogue, 3).train, 3, ChurnConfig())
