"""The paired bootstrap and the per-row holdout values it reads (pure: numpy only)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from registry.bootstrap import NotPaired, paired_difference, weighted_auc
from registry.holdout import HoldoutValues, HoldoutValuesError, rows_digest

KEYS = [f"C{i}" for i in range(400)]


def test_weighted_auc_is_sklearns_roc_auc_with_ties_and_counts() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # many ties
    assert weighted_auc(labels, scores, np.ones((1, 300), int))[0] == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-12
    )
    counts = rng.integers(0, 3, 300)  # a row counted k times = the row repeated k times
    repeated = np.repeat(np.arange(300), counts)
    assert weighted_auc(labels, scores, counts[None, :])[0] == pytest.approx(
        roc_auc_score(labels[repeated], scores[repeated]), abs=1e-12
    )
    only_positives = np.where(labels == 1, 1, 0)[None, :]
    assert np.isnan(weighted_auc(labels, scores, only_positives)[0])


def test_a_constant_per_customer_gain_has_a_zero_width_interval() -> None:
    base = np.linspace(0.0, 0.9, len(KEYS))
    champion = HoldoutValues.mean("map_at_7", base, KEYS)
    candidate = HoldoutValues.mean("map_at_7", base + 0.05, KEYS)
    found = paired_difference(candidate, champion)
    assert (found.diff, found.low, found.high) == pytest.approx((0.05, 0.05, 0.05))
    assert (found.rows, found.resamples) == (len(KEYS), 1000)


def test_the_interval_covers_the_planted_gain_and_is_seeded() -> None:
    """Per-customer gain 0.02 plus noise of sd 0.1 over 400 customers: the standard error
    of the mean gain is 0.005, so the 95% interval is about 0.02 +- 0.01."""
    rng = np.random.default_rng(8)
    base = rng.random(len(KEYS))
    champion = HoldoutValues.mean("map_at_7", base, KEYS)
    candidate = HoldoutValues.mean("map_at_7", base + 0.02 + rng.normal(0, 0.1, 400), KEYS)
    found = paired_difference(candidate, champion)
    assert found.low < 0.02 < found.high
    assert 0.015 < found.high - found.low < 0.025
    assert paired_difference(candidate, champion) == found  # same seed, same interval
    assert paired_difference(candidate, champion, seed=1) != found


def test_auc_difference_of_a_better_and_an_equal_model() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, len(KEYS))
    noise = rng.normal(0, 1, len(KEYS))
    champion = HoldoutValues.auc("roc_auc", labels, labels + noise, KEYS)
    better = HoldoutValues.auc("roc_auc", labels, 3 * labels + noise, KEYS)
    found = paired_difference(better, champion)
    assert found.diff == pytest.approx(
        roc_auc_score(labels, 3 * labels + noise) - roc_auc_score(labels, labels + noise)
    )
    assert found.low > 0.05
    same = paired_difference(champion, champion)
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0)


def test_values_of_other_rows_or_metrics_are_not_paired() -> None:
    values = np.full(len(KEYS), 0.5)
    champion = HoldoutValues.mean("map_at_7", values, KEYS)
    with pytest.raises(NotPaired, match="holdout rows differ"):
        paired_difference(HoldoutValues.mean("map_at_7", values, KEYS[::-1]), champion)
    with pytest.raises(NotPaired, match="holdout rows differ"):
        paired_difference(HoldoutValues.mean("map_at_7", values[:10], KEYS[:10]), champion)
    labels = np.arange(len(KEYS)) % 2
    auc = HoldoutValues.auc("roc_auc", labels, values, KEYS)
    with pytest.raises(NotPaired, match="map_at_7"):
        paired_difference(auc, champion)
    with pytest.raises(NotPaired, match="labels differ"):
        paired_difference(HoldoutValues.auc("roc_auc", 1 - labels, values, KEYS), auc)


def test_artifact_round_trip_keeps_no_keys_and_bad_bytes_are_named() -> None:
    values = HoldoutValues.auc("roc_auc", np.array([0, 1, 1]), np.array([0.1, 0.8, 0.4]), KEYS[:3])
    raw = values.to_bytes()
    back = HoldoutValues.from_bytes(raw)
    assert (back.metric, back.form, back.rows, back.rows_digest) == (
        "roc_auc",
        "roc_auc",
        3,
        rows_digest(KEYS[:3]),
    )
    assert back.scores is not None and back.scores.tolist() == [0.1, 0.8, 0.4]
    with np.load(io.BytesIO(raw)) as stored:  # customer ids never reach the artifact store
        assert set(stored.files) == {"metric", "form", "rows_digest", "labels", "scores"}
    with pytest.raises(HoldoutValuesError, match=r"holdout_values\.npz is not readable"):
        HoldoutValues.from_bytes(b"not an npz")
    with pytest.raises(HoldoutValuesError, match="labels but"):
        HoldoutValues("roc_auc", "roc_auc", "x", labels=np.zeros(2), scores=np.zeros(3))
