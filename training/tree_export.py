"""Fitted scikit-learn gradient-boosting trees -> the service's numpy tree runtime.

The service scores with :class:`core.scoring.trees.TreeEnsemble` (arrays walked by compiled
code, no scikit-learn on the request path); this module copies a fitted
``HistGradientBoostingClassifier``'s trees into one, averages bagged ensembles, and reads
the split gains (feature importances). It reads scikit-learn's private predictor nodes
(``_predictors``, ``_baseline_prediction``): the tests compare every exported ensemble's
output with scikit-learn's own ``decision_function``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from core.scoring.trees import TreeEnsemble

UNSEEN_CLASS_OFFSET = 30.0
"""A product nobody added in training gets a baseline this far below the lowest one."""


def export_trees(model: HistGradientBoostingClassifier, n_outputs: int) -> TreeEnsemble:
    """Copy a fitted classifier's trees into padded numpy arrays (see ``TreeEnsemble``).

    Output columns are class labels ``0..n_outputs-1``; a label absent from training gets
    a baseline far below the others (never recommended ahead of a seen product). With two
    classes sklearn fits one logit for the second; the first then has raw output 0, which
    makes the softmax over the two equal to sklearn's sigmoid.
    """
    classes = np.asarray(model.classes_, dtype=np.int64)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    baseline = np.full(n_outputs, np.nan)
    if len(classes) == 2:
        baseline[classes] = [0.0, base[0]]
        outputs = [int(classes[1])]
    else:
        baseline[classes] = base
        outputs = [int(c) for c in classes]
    baseline[np.isnan(baseline)] = np.nanmin(baseline) - UNSEEN_CLASS_OFFSET
    trees = [
        (out, p.nodes)
        for per_iter in model._predictors
        for out, p in zip(outputs, per_iter, strict=True)
    ]
    packed = []
    depth = 0
    for _, nodes in trees:
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not exported; one-hot encode instead")
        n = len(nodes)
        leaf = nodes["is_leaf"].astype(bool)
        split = ~leaf
        packed.append(
            {
                "feature": np.where(split, nodes["feature_idx"], 0),
                "threshold": nodes["num_threshold"],
                "missing_left": nodes["missing_go_to_left"].astype(bool),
                "left": np.where(split, nodes["left"], np.arange(n)),
                "right": np.where(split, nodes["right"], np.arange(n)),
                "value": np.where(leaf, nodes["value"], 0.0),
                "expected": _expected_values(nodes),
            }
        )
        depth = max(depth, int(nodes["depth"].max()))
    return TreeEnsemble.pack(
        packed, np.array([out for out, _ in trees], dtype=np.int64), baseline, depth
    )


def average_ensembles(ensembles: Sequence[TreeEnsemble]) -> TreeEnsemble:
    """One ensemble whose raw output is the mean of ``ensembles``' raw outputs (bagging):
    all their trees, leaf and expected values divided by their number."""
    if len(ensembles) == 1:
        return ensembles[0]
    n = len(ensembles)
    width = max(e.feature.shape[1] for e in ensembles)

    def stack(name: str, scale: float = 1.0) -> np.ndarray:
        parts = []
        for e in ensembles:
            part = getattr(e, name)
            pad = width - part.shape[1]
            if pad:
                if name in ("left", "right"):  # padding nodes point to themselves
                    filler = np.tile(np.arange(part.shape[1], width), (part.shape[0], 1))
                else:
                    filler = np.zeros((part.shape[0], pad), dtype=part.dtype)
                part = np.hstack([part, filler])
            parts.append(part * scale if scale != 1.0 else part)
        return np.vstack(parts)

    return TreeEnsemble(
        feature=stack("feature"),
        threshold=stack("threshold"),
        missing_left=stack("missing_left"),
        left=stack("left"),
        right=stack("right"),
        value=stack("value", 1.0 / n),
        expected=stack("expected", 1.0 / n),
        tree_class=np.concatenate([e.tree_class for e in ensembles]),
        baseline=np.mean([e.baseline for e in ensembles], axis=0),
        depth=max(e.depth for e in ensembles),
    )


def _expected_values(nodes: np.ndarray) -> np.ndarray:
    """Training-count-weighted mean leaf value under every node (children come after
    their parent in sklearn's node order, so one backward pass suffices)."""
    expected = np.where(nodes["is_leaf"].astype(bool), nodes["value"], 0.0).astype(np.float64)
    count = nodes["count"].astype(np.float64)
    for i in range(len(nodes) - 1, -1, -1):
        if not nodes["is_leaf"][i]:
            lo, hi = int(nodes["left"][i]), int(nodes["right"][i])
            total = count[lo] + count[hi]
            expected[i] = (count[lo] * expected[lo] + count[hi] * expected[hi]) / max(total, 1.0)
    return expected


def split_gains(model: HistGradientBoostingClassifier, n_features: int) -> np.ndarray:
    """Total split gain per input column over all trees (the feature importances)."""
    gains = np.zeros(n_features)
    for per_iter in model._predictors:
        for predictor in per_iter:
            nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
            np.add.at(gains, nodes["feature_idx"], nodes["gain"])
    return gains
