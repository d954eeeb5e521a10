"""The pair ranker: "does this customer add THIS product?", blended with the multiclass one.

The multiclass ranker learns one output per product, each from that product's own
additions only; a product added by few customers has few examples. The pair ranker is
one binary gradient-boosted model over (customer, product not held) rows of the adding
customers: the profile, the product's OWN holding history in shared columns (held one
snapshot back, months held, dropped, snapshots since last held, times added, the packed
holding pattern), the product's collaborative score and the product itself (a
categorical input). What "held it before" or "customers like you add it" means is learnt
once across products. Its log-odds are added to the multiclass log-probability
(``BoostedRecommender.pair_weight``).

The blend is kept because it ranks better than the multiclass ranker alone on the
validation folds (unseen customers, never the target month); the figures and the command
that reproduces them are in docs/recommender.md.

Serving walks no categorical split: :func:`export_pair_trees` resolves every split on the
product for each product in turn and renames the shared columns to that product's own
columns of the multiclass input row, so the pair ranker becomes one set of trees per
product reading the same row as the multiclass trees (output ``p`` = product ``p``'s
log-odds), walked by the same compiled code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.ensemble import HistGradientBoostingClassifier

from core.scoring.boosted import BoostedRecommender
from core.scoring.trees import TreeEnsemble
from training.recommender_data import Snapshot, frame_inputs, held_matrix

SHARED_HISTORY_SKIP = ("held__",)
"""Own-history columns left out: a candidate product is never held now."""


@dataclass(frozen=True)
class PairLayout:
    """Where each pair-ranker input comes from in the multiclass input row.

    ``columns[j]`` is ``(P,)``: the multiclass input column that pair input ``j`` reads for
    each product (the same column for every product for a profile input); the last pair
    input is the product index itself (``product_input``).
    """

    names: list[str]
    columns: np.ndarray  # (inputs - 1, P) int64
    product_input: int

    @classmethod
    def of(cls, scorer: BoostedRecommender) -> PairLayout:
        position = {name: i for i, name in enumerate(scorer.columns)}
        n_products = len(scorer.product_ids)
        names: list[str] = []
        columns: list[list[int]] = []
        own = [p for p in scorer.holding_prefixes if p not in SHARED_HISTORY_SKIP]
        shared = [
            c
            for c in scorer.columns
            if not c.startswith("collaborative__")
            and not any(c.startswith(prefix) for prefix in scorer.holding_prefixes)
        ]
        for name in shared:  # profile, segment, tier and other one-hot inputs
            names.append(name)
            columns.append([position[name]] * n_products)
        for prefix in [*own, "collaborative__"]:
            names.append(f"{prefix}own")
            columns.append([position[prefix + pid] for pid in scorer.product_ids])
        names.append("product")
        return cls(names, np.array(columns, dtype=np.int64), len(names) - 1)

    def rows(self, x: np.ndarray, customers: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Pair input rows for (multiclass input row, product) pairs."""
        picked = x[customers[:, None], self.columns[:, products].T]
        return np.hstack([picked, products.astype(np.float64)[:, None]])


@dataclass(frozen=True)
class AdderInputs:
    """One training snapshot's adding customers: model input rows, holdings, additions."""

    x: np.ndarray  # (adders, columns) multiclass input rows
    held: np.ndarray  # (adders, P) 0/1
    added: np.ndarray  # (adders, P) > 0 where added


def adder_inputs(scorer: BoostedRecommender, snapshots: Sequence[Snapshot]) -> list[AdderInputs]:
    """The adding customers of every snapshot, their input rows built once (the pair rows
    and the blend's temperature both read them)."""
    out = []
    for snap in snapshots:
        adders = np.flatnonzero(snap.added.sum(axis=1) > 0)
        if len(adders):
            features = snap.features.iloc[adders]
            out.append(
                AdderInputs(
                    frame_inputs(scorer, features),
                    held_matrix(features, scorer.product_ids),
                    snap.added[adders] > 0,
                )
            )
    return out


@dataclass(frozen=True)
class PairTraining:
    rows: np.ndarray
    labels: np.ndarray


def pair_training_rows(
    adders: Sequence[AdderInputs], layout: PairLayout, max_rows: int, seed: int
) -> PairTraining:
    """One row per (adding customer, product not held) of every snapshot; label: added.

    Above ``max_rows`` rows a uniform sample of the rows is kept (fixed ``seed``).
    """
    parts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for part in adders:
        customers, products = np.nonzero(part.held == 0)
        parts.append(layout.rows(part.x, customers, products))
        labels.append(part.added[customers, products].astype(np.int64))
    if not parts:
        return PairTraining(np.zeros((0, len(layout.names))), np.zeros(0, dtype=np.int64))
    rows, y = np.vstack(parts), np.concatenate(labels)
    if len(y) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_rows, replace=False))
        rows, y = rows[keep], y[keep]
    return PairTraining(rows, y)


def fit_pair_model(
    training: PairTraining,
    layout: PairLayout,
    *,
    max_iter: int,
    learning_rate: float,
    max_leaf_nodes: int,
    min_samples_leaf: int,
    seed: int,
) -> HistGradientBoostingClassifier | None:
    """The binary model, or None when the rows hold a single class (nothing to learn)."""
    if len(np.unique(training.labels)) < 2:
        return None
    categorical = np.zeros(len(layout.names), dtype=bool)
    categorical[layout.product_input] = True
    model = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min_samples_leaf,
        l2_regularization=1.0,
        categorical_features=categorical,
        early_stopping=False,
        random_state=seed,
    )
    # As for the multiclass ranker: an all-missing column becomes a constant (no split).
    unknown = np.isnan(training.rows).all(axis=0)
    return model.fit(np.where(unknown, 0.0, training.rows), training.labels)


def export_pair_trees(model: HistGradientBoostingClassifier, layout: PairLayout) -> TreeEnsemble:
    """The binary model as one set of trees per product over the multiclass input row.

    For product ``p`` every split on the product is resolved (left iff ``p`` is in the
    split's left set; a product the fit never saw goes the missing-value way, as sklearn
    sends an unknown category) and every other split's input is renamed to the column it
    reads for ``p``. Raw output ``p`` equals the model's ``decision_function`` on
    ``p``'s pair row (tests/training/test_recommender_quality.py).
    """
    n_products = layout.columns.shape[1]
    baseline = float(np.asarray(model._baseline_prediction).reshape(-1)[0])
    inputs, codes = _fitted_inputs(model, layout)
    trees, products, depth = [], [], 0
    for per_iter in model._predictors:
        predictor = per_iter[0]
        for product in range(n_products):
            tree, tree_depth = _specialize(
                predictor.nodes,
                predictor.raw_left_cat_bitsets,
                layout,
                inputs,
                product,
                codes.get(product),
            )
            trees.append(tree)
            products.append(product)
            depth = max(depth, tree_depth)
    return TreeEnsemble.pack(trees, np.array(products), np.full(n_products, baseline), depth)


def fit_temperature(
    scorer: BoostedRecommender, adders: Sequence[AdderInputs], max_rows: int, seed: int
) -> float:
    """The temperature that makes the blend's softmax a calibrated "which product is added".

    Fitted on the training snapshots' adding customers (at most ``max_rows``): the one
    scalar that minimises the mean negative log-likelihood of the products they added
    (each customer's additions weigh 1 in all, as in the multiclass fit), over the
    blended scores at temperature 1. A ranking cannot change with it.
    """
    if not adders:
        return 1.0
    x = np.vstack([part.x for part in adders])
    added = np.vstack([part.added for part in adders])
    if len(x) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))
        x, added = x[keep], added[keep]
    blended = dataclasses.replace(scorer, blend_temperature=1.0).blended_inputs(x)
    share = added / added.sum(axis=1, keepdims=True)

    def loss(temperature: float) -> float:
        z = blended / temperature
        log_p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
        return float(-(share * np.where(added, log_p, 0.0)).sum() / len(x))

    return float(minimize_scalar(loss, bounds=(0.2, 5.0), method="bounded").x)


def pair_importances(model: HistGradientBoostingClassifier, layout: PairLayout) -> pd.Series:
    """Total split gain per pair input (named as in :attr:`PairLayout.names`), descending."""
    inputs, _ = _fitted_inputs(model, layout)
    gains = np.zeros(len(layout.names))
    for per_iter in model._predictors:
        nodes = per_iter[0].nodes[~per_iter[0].nodes["is_leaf"].astype(bool)]
        np.add.at(gains, inputs[nodes["feature_idx"].astype(np.int64)], nodes["gain"])
    return pd.Series(gains, index=layout.names).sort_values(ascending=False)


def _fitted_inputs(
    model: HistGradientBoostingClassifier, layout: PairLayout
) -> tuple[np.ndarray, dict[int, int]]:
    """The pair input behind each of the fitted trees' feature indices, and each product's
    category code.

    scikit-learn (1.4+) ordinal-encodes categorical inputs and moves them in front of the
    numeric ones before binning: the trees' feature ``0`` is then the product and feature
    ``i`` the ``i``-th numeric input; a split's left set holds category codes (positions in
    the sorted products seen), not products."""
    preprocessor = getattr(model, "_preprocessor", None)
    n_inputs = len(layout.names)
    if preprocessor is None:
        return np.arange(n_inputs), {p: p for p in range(layout.columns.shape[1])}
    categorical = np.asarray(model.is_categorical_, dtype=bool)
    inputs = np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)])
    seen = preprocessor.named_transformers_["encoder"].categories_[0]
    codes = {int(p): code for code, p in enumerate(seen) if not np.isnan(p)}
    return inputs, codes


def _specialize(
    nodes: np.ndarray,
    left_sets: np.ndarray,
    layout: PairLayout,
    inputs: np.ndarray,
    product: int,
    code: int | None,
) -> tuple[dict[str, np.ndarray], int]:
    """One tree for one product, as :meth:`TreeEnsemble.pack` takes it, and its depth.

    ``expected`` is recomputed on the resolved tree (count-weighted mean of its leaves), so
    the credits still add up.
    ``code`` is the product's category code (None: never seen, so "missing")."""
    out: list[tuple[int, float, bool, int, int, float, float]] = []
    counts: list[float] = []
    deepest = 0

    def visit(i: int, depth: int) -> int:
        nonlocal deepest
        while (
            not nodes["is_leaf"][i] and inputs[int(nodes["feature_idx"][i])] == layout.product_input
        ):
            if not nodes["is_categorical"][i]:
                raise ValueError("the product input must be categorical")
            if code is not None:
                word = left_sets[nodes["bitset_idx"][i], code // 32]
                go_left = bool((int(word) >> (code % 32)) & 1)
            else:
                go_left = bool(nodes["missing_go_to_left"][i])
            i = int(nodes["left"][i] if go_left else nodes["right"][i])
        k = len(out)
        out.append((0, 0.0, False, k, k, 0.0, 0.0))
        counts.append(float(nodes["count"][i]))
        deepest = max(deepest, depth)
        if nodes["is_leaf"][i]:
            v = float(nodes["value"][i])
            out[k] = (0, 0.0, False, k, k, v, v)
            return k
        if nodes["is_categorical"][i]:
            raise ValueError("only the product input may be categorical")
        lo = visit(int(nodes["left"][i]), depth + 1)
        hi = visit(int(nodes["right"][i]), depth + 1)
        total = max(counts[lo] + counts[hi], 1.0)
        mean = (counts[lo] * out[lo][6] + counts[hi] * out[hi][6]) / total
        column = int(layout.columns[int(inputs[int(nodes["feature_idx"][i])]), product])
        out[k] = (
            column,
            float(nodes["num_threshold"][i]),
            bool(nodes["missing_go_to_left"][i]),
            lo,
            hi,
            0.0,
            mean,
        )
        return k

    visit(0, 0)
    names = ("feature", "threshold", "missing_left", "left", "right", "value", "expected")
    return {name: np.array([node[k] for node in out]) for k, name in enumerate(names)}, deepest
