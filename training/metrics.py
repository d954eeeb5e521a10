"""Ranking metrics for "which products will the customer add next".

``average_precision_at_k`` is the Kaggle definition used by the Santander competition
(``ml_metrics.apk``): precision is counted at every rank ``i <= k`` where the prediction is
relevant and not repeated earlier in the list, summed, and divided by ``min(len(actual), k)``.

A customer who added nothing has no defined average precision (the competition scored it 0,
which only shrinks every model's score by the same share of such customers). Callers
therefore evaluate over customers who added at least one product; these functions return
0.0 for an empty ``actual`` so that a caller's mistake shows up as a lower score, not a crash.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

import numpy as np

Item = TypeVar("Item", bound=Hashable)
"""A product: its id, or its column index - any hashable label works the same."""


def _dedupe(predicted: Iterable[Item], k: int) -> list[Item | None]:
    """First ``k`` predictions; a repeat keeps its rank but becomes ``None`` (never a hit).

    Kaggle's ``apk`` truncates to ``k`` first and then skips repeats, so a duplicate uses
    up a rank without earning credit; we do the same.
    """
    seen: set[Item] = set()
    out: list[Item | None] = []
    for item in list(predicted)[:k]:
        out.append(None if item in seen else item)
        seen.add(item)
    return out


def average_precision_at_k(actual: set[Item], predicted: Sequence[Item], k: int) -> float:
    """Kaggle AP@k: mean of precision@i over relevant ranks, normalised by ``min(|actual|, k)``."""
    if not actual or k <= 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, item in enumerate(_dedupe(predicted, k), start=1):
        if item is not None and item in actual:
            hits += 1
            total += hits / i
    return total / min(len(actual), k)


def map_at_k(actuals: Sequence[set[Item]], predictions: Sequence[Sequence[Item]], k: int) -> float:
    """Mean AP@k over customers (pass only customers who added something; see module doc)."""
    return mean_metric("ap", actuals, predictions, k)


def ndcg_at_k(actual: set[Item], predicted: Sequence[Item], k: int) -> float:
    """Binary-relevance NDCG@k: DCG of the list over DCG of a perfect list of the same length."""
    if not actual or k <= 0:
        return 0.0
    dcg = sum(
        1.0 / math.log2(i + 1)
        for i, item in enumerate(_dedupe(predicted, k), start=1)
        if item is not None and item in actual
    )
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(actual), k) + 1))
    return dcg / ideal


def recall_at_k(actual: set[Item], predicted: Sequence[Item], k: int) -> float:
    """Share of the added products found in the first ``k`` distinct predictions."""
    if not actual:
        return 0.0
    found = {p for p in _dedupe(predicted, k) if p is not None} & actual
    return len(found) / len(actual)


def mean_metric(
    metric: str, actuals: Sequence[set[Item]], predictions: Sequence[Sequence[Item]], k: int
) -> float:
    """Mean of ``ap``, ``ndcg`` or ``recall`` at k over customers (see :func:`map_at_k`)."""
    fn = {"ndcg": ndcg_at_k, "recall": recall_at_k, "ap": average_precision_at_k}[metric]
    if len(actuals) != len(predictions):
        raise ValueError(f"{len(actuals)} actual sets but {len(predictions)} predictions")
    if not actuals:
        return 0.0
    return float(np.mean([fn(a, p, k) for a, p in zip(actuals, predictions, strict=True)]))
