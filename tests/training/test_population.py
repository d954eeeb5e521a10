"""Departed customers stay in the feature set (win-back) but never in a training set.

Oracle: the master table's ``left_on``; a customer who had left at a snapshot's date must
be absent from that snapshot's churn and recommender training rows, while the feature set
of the same date does hold such customers (so the exclusion is doing something).
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import Tables
from features.pointintime import compute_features
from features.synthetic import generate_bank
from training.datasets import TimeSplit, churn_split, recommender_split

END = date(2026, 10, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(customers=1500, months=9, seed=4, catalogue=catalogue, end_month=END)


def _left_by(tables: Tables, as_of: pd.Timestamp) -> set[str]:
    left = pd.to_datetime(tables.customers["left_on"])
    return set(tables.customers.loc[(left <= as_of).to_numpy(), "customer_id"].astype(str))


def _check(split: TimeSplit, tables: Tables, catalogue: Catalogue) -> None:
    for snapshot in [*split.train, split.holdout]:
        gone = _left_by(tables, snapshot.as_of)
        in_feature_set = compute_features(tables, snapshot.as_of.date(), catalogue)
        kept = set(in_feature_set.index[in_feature_set["departed"].astype(bool)])
        assert kept and kept <= gone, snapshot.as_of
        assert not gone & set(snapshot.features.index), snapshot.as_of
        assert not snapshot.features["departed"].astype(bool).any()
        assert snapshot.labels.index.equals(snapshot.features.index)


def test_churn_training_excludes_departed_customers(bank: Tables, catalogue: Catalogue) -> None:
    split = churn_split(bank, catalogue, 3)
    _check(split, bank, catalogue)
    assert split.holdout.labels["churned"].sum() > 0


def test_recommender_training_excludes_departed_customers(
    bank: Tables, catalogue: Catalogue
) -> None:
    _check(recommender_split(bank, catalogue), bank, catalogue)
