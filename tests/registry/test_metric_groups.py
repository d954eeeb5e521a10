"""Metrics are logged grouped by prefix and read back plain (pure naming rules)."""

from __future__ import annotations

import pytest

from registry.metric_groups import grouped, plain


@pytest.mark.parametrize(
    ("name", "logged"),
    [
        ("roc_auc", "quality/roc_auc"),
        ("map_at_7", "quality/map_at_7"),
        ("top_decile_churn_rate", "quality/top_decile_churn_rate"),
        ("holdout_churn_rate", "data/holdout_churn_rate"),  # a base rate, not a quality
        ("holdout_customers", "data/holdout_customers"),
        ("train_rows", "data/train_rows"),
        ("train_seconds", "time/train_seconds"),
        ("ranker_trees", "model/ranker_trees"),
        ("quality/roc_auc", "quality/roc_auc"),  # already grouped
        ("a/b", "quality/a/b"),  # an unknown prefix is not a group
    ],
)
def test_grouped_names(name: str, logged: str) -> None:
    assert grouped(name) == logged


def test_plain_reads_old_and_new_runs_alike() -> None:
    assert plain({"quality/roc_auc": 0.8, "time/train_seconds": 3.0, "brier": 0.1}) == {
        "roc_auc": 0.8,
        "train_seconds": 3.0,
        "brier": 0.1,
    }
