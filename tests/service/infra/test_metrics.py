"""Ranking metrics, checked against cases computed by hand."""

from __future__ import annotations

import math

import pytest

from training.metrics import (
    average_precision_at_k,
    map_at_k,
    mean_metric,
    ndcg_at_k,
    recall_at_k,
)


@pytest.mark.parametrize(
    ("actual", "predicted", "k", "expected"),
    [
        # hits at ranks 1 and 3: (1/1 + 2/3) / min(2, 7)
        ({"a", "b"}, ["a", "x", "b"], 7, (1 + 2 / 3) / 2),
        # fewer added than k: divide by the 1 product added, not by k
        ({"b"}, ["a", "b", "c"], 7, 1 / 2),
        # nothing relevant predicted
        ({"a"}, ["x", "y"], 7, 0.0),
        # nothing added: undefined in the competition; callers exclude it, we return 0
        (set(), ["a", "b"], 7, 0.0),
        # a duplicate uses up rank 2 without credit: (1/1 + 2/3) / 2
        ({"a", "b"}, ["a", "a", "b"], 7, (1 + 2 / 3) / 2),
        # the hit sits beyond k
        ({"c"}, ["a", "b", "c"], 2, 0.0),
        # more added than k: normalise by k, so a perfect list still scores 1
        (set("abcdefgh"), list("abcdefg"), 7, 1.0),
        # perfect order
        ({"a", "b"}, ["b", "a", "x"], 7, 1.0),
    ],
)
def test_average_precision_at_k(
    actual: set[str], predicted: list[str], k: int, expected: float
) -> None:
    assert average_precision_at_k(actual, predicted, k) == pytest.approx(expected)


def test_map_is_the_mean_over_customers() -> None:
    actuals = [{"a"}, {"b"}, {"a", "b"}]
    predictions = [["a"], ["a", "b"], ["x", "b", "a"]]
    expected = (1.0 + 0.5 + (1 / 2 + 2 / 3) / 2) / 3
    assert map_at_k(actuals, predictions, 7) == pytest.approx(expected)
    assert mean_metric("ap", actuals, predictions, 7) == pytest.approx(expected)


def test_map_refuses_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="2 actual sets but 1 predictions"):
        map_at_k([{"a"}, {"b"}], [["a"]], 7)


def test_ndcg_at_k() -> None:
    # hits at ranks 2 and 3; ideal has them at ranks 1 and 2
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k({"a", "b"}, ["x", "a", "b"], 7) == pytest.approx(dcg / ideal)
    assert ndcg_at_k({"a"}, ["a", "x"], 7) == pytest.approx(1.0)
    assert ndcg_at_k({"a"}, ["a", "a"], 7) == pytest.approx(1.0)  # duplicate earns nothing
    assert ndcg_at_k({"a", "b"}, ["a", "a", "b"], 7) == pytest.approx(
        (1 + 1 / math.log2(4)) / ideal
    )
    assert ndcg_at_k(set(), ["a"], 7) == 0.0


def test_recall_at_k() -> None:
    assert recall_at_k({"a", "b", "c"}, ["a", "x", "b"], 2) == pytest.approx(1 / 3)
    assert recall_at_k({"a", "b", "c"}, ["a", "x", "b"], 3) == pytest.approx(2 / 3)
    assert recall_at_k({"a"}, ["a", "a"], 7) == 1.0
    assert recall_at_k(set(), ["a"], 7) == 0.0
    assert mean_metric("recall", [{"a"}, {"b"}], [["a"], ["x"]], 7) == pytest.approx(0.5)
