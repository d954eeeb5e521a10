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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from registry.holdout import AUC, MEAN, HoldoutValues

RESAMPLES = 1000
SEED = 20261207
LEVEL = 0.95
_BLOCK_CELLS = 250_000  # resamples x rows per block: 2 MB of int64 stays in the CPU cache


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
    difference = _difference_of(candidate, reference)
    full = difference(np.ones((1, n), dtype=np.int64))[0]
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    diffs: list[np.ndarray] = []
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        diffs.append(difference(_counts(rng, size, n)))
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


def _difference_of(
    candidate: HoldoutValues, reference: HoldoutValues
) -> Callable[[np.ndarray], np.ndarray]:
    """``counts -> metric(candidate) - metric(reference)`` for each row-count vector in
    ``counts``; the sorting an AUC needs is done once here, not once per block."""
    if candidate.form == MEAN:
        assert candidate.values is not None and reference.values is not None
        delta = candidate.values - reference.values
        return lambda counts: np.asarray(counts @ delta / counts.sum(axis=1), dtype=float)
    assert candidate.labels is not None and candidate.scores is not None
    assert reference.scores is not None
    ours = Ranked.of(candidate.labels, candidate.scores)
    theirs = Ranked.of(candidate.labels, reference.scores)
    return lambda counts: ours.auc(counts) - theirs.auc(counts)


@dataclass(frozen=True)
class Ranked:
    """Rows sorted by score, with where each run of tied scores starts."""

    order: np.ndarray
    positive: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> Ranked:
        order = np.argsort(scores, kind="stable")
        ordered = scores[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        return cls(order, labels[order].astype(bool), starts)

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """ROC-AUC with row ``i`` counted ``counts[b, i]`` times, for every ``b``.

        Mann-Whitney on score levels: each positive earns the negatives below its score
        plus half of those tied with it; NaN where a resample lacks either class. Integer
        arithmetic (exact; no overflow below about 10^9 rows), few passes over the block.
        """
        weights = counts[:, self.order]
        pos = weights * self.positive
        everyone = weights
        if len(self.starts) < len(self.order):  # tied scores: sum each run of ties
            pos = np.add.reduceat(pos, self.starts, axis=1)
            everyone = np.add.reduceat(weights, self.starts, axis=1)
        neg = everyone - pos
        below = np.cumsum(neg, axis=1)
        below -= neg
        wins2 = (pos * (2 * below + neg)).sum(axis=1)  # twice the wins: ties count 1 of 2
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins2 / (2.0 * pairs), np.nan)


def weighted_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC with each row counted ``counts[b, i]`` times, for every row ``b`` of counts."""
    return Ranked.of(labels, scores).auc(counts)
