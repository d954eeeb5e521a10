"""Paired bootstrap of a metric difference between two versions on the same holdout rows.

Why paired: both versions scored the same customers, so most of the customer-to-customer
spread cancels in the difference; resampling the two metrics independently would give an
interval several times too wide to tell an equal model from a worse one.

Each resample draws the holdout rows with replacement (the same draw for both versions)
and recomputes both metrics on it: the mean for a per-customer metric (MAP@7), the
tie-aware ROC-AUC (Mann-Whitney) for a labelled score. The interval is the percentile
interval of the resampled differences. The generator is seeded, so the same two versions
always get the same interval; resamples are drawn as row counts in blocks (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from registry.holdout import AUC, MEAN, HoldoutValues

RESAMPLES = 1000
SEED = 20261207
LEVEL = 0.95
_BLOCK_CELLS = 4_000_000  # resamples x rows held in memory at once (32 MB of int64)


class NotPaired(ValueError):
    """The two versions' holdout values cannot be paired row by row (says why)."""


@dataclass(frozen=True)
class Interval:
    """``candidate - reference`` on the whole holdout and its bootstrap interval."""

    diff: float
    low: float
    high: float
    rows: int
    resamples: int
    level: float = LEVEL


def paired_difference(
    candidate: HoldoutValues,
    reference: HoldoutValues,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """The difference ``candidate - reference`` and its ``level`` percentile interval."""
    _check_paired(candidate, reference)
    n = candidate.rows
    full = _metric_pair(candidate, reference, np.ones((1, n), dtype=np.int64))[0]
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    diffs: list[np.ndarray] = []
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        diffs.append(_metric_pair(candidate, reference, _counts(rng, size, n)))
        done += size
    sampled = np.concatenate(diffs)
    sampled = sampled[np.isfinite(sampled)]  # a resample without both classes has no AUC
    if sampled.size == 0:
        raise NotPaired("no bootstrap resample had both outcomes (too few positive rows)")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(sampled, [tail, 100 - tail])
    return Interval(float(full), float(low), float(high), n, resamples, level)


def _check_paired(candidate: HoldoutValues, reference: HoldoutValues) -> None:
    if candidate.metric != reference.metric or candidate.form != reference.form:
        raise NotPaired(
            f"holdout values are of {candidate.metric} ({candidate.form}) and "
            f"{reference.metric} ({reference.form})"
        )
    if candidate.rows != reference.rows or candidate.rows_digest != reference.rows_digest:
        raise NotPaired(
            f"holdout rows differ ({candidate.rows} rows, digest {candidate.rows_digest} vs "
            f"{reference.rows} rows, digest {reference.rows_digest})"
        )
    if candidate.rows == 0:
        raise NotPaired("the holdout has no rows")
    same_labels = np.array_equal(np.asarray(candidate.labels), np.asarray(reference.labels))
    if candidate.form == AUC and not same_labels:
        raise NotPaired("the holdout labels differ between the two versions")


def _counts(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """(size, n) how often each row is drawn in each resample (rows drawn with replacement)."""
    drawn = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
    return np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n)


def _metric_pair(
    candidate: HoldoutValues, reference: HoldoutValues, counts: np.ndarray
) -> np.ndarray:
    """``metric(candidate) - metric(reference)`` for each row-count vector in ``counts``."""
    if candidate.form == MEAN:
        assert candidate.values is not None and reference.values is not None
        delta = candidate.values - reference.values
        return np.asarray(counts @ delta / counts.sum(axis=1), dtype=float)
    assert candidate.labels is not None and candidate.scores is not None
    assert reference.scores is not None
    return weighted_auc(candidate.labels, candidate.scores, counts) - weighted_auc(
        candidate.labels, reference.scores, counts
    )


def weighted_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC with each row counted ``counts[b, i]`` times, for every row ``b`` of counts.

    Mann-Whitney on score levels: each positive earns the negatives below its score plus
    half of those tied with it; NaN where a resample lacks positives or negatives.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    positive = labels[order].astype(bool)
    weights = counts[:, order].astype(float)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    pos = np.add.reduceat(np.where(positive, weights, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive, 0.0, weights), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)
