"""Trees exported from scikit-learn score exactly as scikit-learn does: single models,
bagged ensembles, and per-feature contributions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from core.scoring.trees import FlatTrees
from training.tree_export import average_ensembles, export_trees

# -- exported trees ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 4])
def test_exported_trees_equal_sklearn(n_classes: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the learned side
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + (np.nan_to_num(x[:, 1]) > 0.5)
    y = y % n_classes
    model = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=7, random_state=0)
    model.fit(x[:300], y[:300])
    trees = export_trees(model, n_classes)
    rows = x[300:]
    raw = trees.raw(rows)
    expected = model.decision_function(rows)
    if n_classes == 2:
        np.testing.assert_allclose(raw[:, 1] - raw[:, 0], expected, rtol=0, atol=1e-9)
    else:
        # label 3 never occurs in training: it ranks below every seen product
        np.testing.assert_allclose(raw[:, model.classes_], expected, rtol=0, atol=1e-9)
        assert (raw[:, 3] < raw[:, :3].min(axis=1)).all()
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    proba = shifted / shifted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        proba[:, model.classes_], model.predict_proba(rows), rtol=0, atol=1e-9
    )
    # the numpy walk (no numba) reaches the same leaves
    np.testing.assert_allclose(trees.raw(rows, compiled=False), raw, rtol=0, atol=1e-12)


def test_bagged_trees_score_the_mean_of_the_models_and_walk_the_same_paths() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(800, 6))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + 2 * (np.nan_to_num(x[:, 3]) > 0.7)
    models = [
        HistGradientBoostingClassifier(
            max_iter=15, max_leaf_nodes=7 + 4 * seed, max_features=0.5, random_state=seed
        ).fit(x[:400], y[:400])
        for seed in range(3)
    ]
    bag = average_ensembles([export_trees(m, 4) for m in models])
    rows = x[400:]
    mean = np.mean([m.decision_function(rows) for m in models], axis=0)
    np.testing.assert_allclose(bag.raw(rows)[:, models[0].classes_], mean, rtol=0, atol=1e-9)
    flat = FlatTrees(bag)
    for row in rows[:40]:
        raw, leaves = flat.raw_leaves_row(row)
        np.testing.assert_allclose(raw, bag.raw(row[None])[0], rtol=0, atol=1e-12)
        credits = flat.leaf_credits(leaves, np.array([0, 2]), x.shape[1])
        np.testing.assert_allclose(
            credits,
            flat.leaf_credits(leaves, np.array([0, 2]), x.shape[1], compiled=False),
            rtol=0,
            atol=1e-12,
        )
        bias_plus_credits = flat.bias[[0, 2]] + credits.sum(axis=1)
        np.testing.assert_allclose(bias_plus_credits, raw[[0, 2]], atol=1e-9)


def test_contributions_add_up_to_the_raw_score() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 2] > 1)
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    trees = export_trees(model, 4)
    row = x[:1]
    for c in range(4):
        per_feature, bias = trees.contributions(row, c)
        assert bias + per_feature.sum() == pytest.approx(trees.raw(row)[0, c], abs=1e-9)
    assert abs(trees.contributions(row, 0)[0][3]) < 1e-12  # x3 carries no signal
