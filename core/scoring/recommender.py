"""Next-product propensities at request time: collaborative filtering feeding a linear ranker.

Stage 1 (collaborative). Implicit ALS learns item factors ``Y`` (products x factors) from
the customer x product holdings matrix. Scoring a customer normally needs their user
factors ``x_u``, i.e. a per-customer least-squares solve, and is impossible for a customer
ALS never saw. With uniform confidence (the ALS objective without implicit's ``1 + alpha r``
weights) that solve has a closed form for *any* 0/1 holdings vector ``h``::

    x_u = argmin_x ||h - Y x||^2 + lambda ||x||^2 = (Y^T Y + lambda I)^-1 Y^T h
    score = Y x_u = Y (Y^T Y + lambda I)^-1 Y^T h = M h

so the items x items matrix ``M = Y (Y^T Y + lambda I)^-1 Y^T`` is computed once at training
and the collaborative score of every product is ``M @ h`` (a 24 x 24 product, no solve).
For a product the customer does not hold, ``h[p] = 0``, so its score comes only from the
products they do hold. Dropping the confidence weights is the price of the closed form; the
ranker below learns how far to trust the score.

Stage 2 (ranker). A logistic regression over (customer, product) pairs, fitted offline on
products added in the following month, with weights exported to numpy:

* shared pair features: the collaborative score, "held this product before" and the
  product's log add-popularity (the product's base rate);
* the customer's standardized profile, behaviour and holdings, each with its own weight per
  product (the product one-hot crossed with the customer features): this is where "holders
  of a payroll account add a credit card" is learned.

The logit of product ``p`` is a sum of per-feature terms, each relative to the average
training pair (inputs are standardized), so ``reasons`` can report which terms pushed this
product up for this customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from core.scoring.base import FeatureRecord, Reason
from core.scoring.churn import TabularDesign, column_as_float, floats
from core.scoring.design import shared_result, shared_transforms, sharing
from core.scoring.packed_trees import (
    PackedTrees,
    compile_kernel,
    leaves_compiled,
    raw_leaves_compiled,
)

PAIR_FEATURES = ("collaborative", "held_before", "popularity")
"""Pair features shared by all products, in the order of ``pair_weights``."""

REASON_TEXTS = {
    "collaborative": "customers with holdings like yours added this",
    "held_before": "you held this before",
    "popular": "one of the products customers add most often",
    "related_products": "goes with products you already hold",
    "life_stage": "fits your age, income and relationship with the bank",
    "activity": "fits how you use your accounts",
    "popular_in_segment": "popular in your segment this month",
    "recent_activity": "you have been adding products recently",
}
"""What each reason code says to a customer or an advisor."""

_CHUNK_ROWS = 4096


def held_column(product_id: str) -> str:
    return f"held__{product_id}"


def dropped_column(product_id: str) -> str:
    return f"dropped__{product_id}"


def customer_group(column: str) -> str:
    """Reason code of a customer design column (``held__x`` -> ``related_products`` ...)."""
    base = column.removeprefix("missing__").split("=", 1)[0]
    if base.startswith(("held__", "months_held__", "held_prev__")) or base == "n_products":
        return "related_products"
    if base in ("age", "income", "tier", "segment", "tenure_months", "risk_level"):
        return "life_stage"
    return "activity"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class TwoStageRecommender:
    """ALS projection + exported logistic ranker; implements ``RecommenderScorer``."""

    product_ids: list[str]
    popularity: np.ndarray  # (P,) share of training customers who added each product
    projection: np.ndarray  # (P, P) the matrix M of the module docstring
    customer_design: TabularDesign  # customer row -> standardized z_c (d,)
    interaction_weights: np.ndarray  # (P, d) per-product weights on z_c
    pair_mean: np.ndarray  # (3,) standardization of PAIR_FEATURES
    pair_scale: np.ndarray  # (3,)
    pair_weights: np.ndarray  # (3,)
    intercept: float
    kind: str = "recommender"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._log_popularity = np.log(np.clip(self.popularity, 1e-6, None))
        self._groups = np.array([customer_group(c) for c in self.customer_design.columns])
        self._held_cols = [held_column(p) for p in self.product_ids]
        self._dropped_cols = [dropped_column(p) for p in self.product_ids]
        names = list(self.customer_design.feature_names)
        self.feature_names = names + [
            c for c in self._held_cols + self._dropped_cols if c not in names
        ]

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # -- inputs -----------------------------------------------------------------------------

    def _record_pairs(self, record: FeatureRecord) -> tuple[np.ndarray, np.ndarray]:
        def flags(cols: Sequence[str]) -> np.ndarray:  # NaN (missing) > 0 is False
            return (floats([record.get(c) for c in cols]) > 0).astype(np.float64)[None, :]

        return flags(self._held_cols), flags(self._dropped_cols)

    def _frame_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        def flags(cols: Sequence[str]) -> np.ndarray:
            values = np.column_stack([column_as_float(frame[c]) for c in cols])
            return (values > 0).astype(np.float64)  # NaN (missing) > 0 is False

        return flags(self._held_cols), flags(self._dropped_cols)

    def pair_matrix(self, held: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        """Standardized pair features, shape ``(rows, P, 3)``.

        Elementwise products summed over the last axis (not ``@``) so that one row and a
        batch of rows go through the same floating-point operations and give identical
        numbers: BLAS picks different kernels for a vector and a matrix.
        """
        collab = (held[:, None, :] * self.projection[None, :, :]).sum(axis=2)
        held_before = dropped * (1.0 - held)
        popularity = np.broadcast_to(self._log_popularity, held.shape)
        raw = np.stack([collab, held_before, popularity], axis=2)
        return (raw - self.pair_mean) / self.pair_scale

    # -- scoring ----------------------------------------------------------------------------

    def _terms(self, z_customer: np.ndarray, z_pair: np.ndarray) -> np.ndarray:
        """Logit of every (row, product): ``(rows, P)``."""
        customer = (z_customer[:, None, :] * self.interaction_weights[None, :, :]).sum(axis=2)
        pair = (z_pair * self.pair_weights).sum(axis=2)
        return customer + pair + self.intercept

    def score(self, record: FeatureRecord) -> np.ndarray:
        z_customer = self.customer_design.transform_record(record)
        z_pair = self.pair_matrix(*self._record_pairs(record))
        return _sigmoid(self._terms(z_customer, z_pair))[0]

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Propensities for every row of a feature frame, ``(rows, P)``; same numbers as
        :meth:`score` on each row's record (offline evaluation uses this)."""
        out = np.empty((len(frame), len(self.product_ids)))
        for start in range(0, len(frame), _CHUNK_ROWS):
            chunk = frame.iloc[start : start + _CHUNK_ROWS]
            z_customer = self.customer_design.transform_frame(chunk)
            z_pair = self.pair_matrix(*self._frame_pairs(chunk))
            out[start : start + len(chunk)] = _sigmoid(self._terms(z_customer, z_pair))
        return out

    # -- explanations -----------------------------------------------------------------------

    def contributions(self, record: FeatureRecord, product_index: int) -> dict[str, float]:
        """Each reason group's share of product ``product_index``'s logit for this record."""
        z_customer = self.customer_design.transform_record(record)[0]
        z_pair = self.pair_matrix(*self._record_pairs(record))[0, product_index]
        terms = z_customer * self.interaction_weights[product_index]
        pair_terms = z_pair * self.pair_weights
        out = {
            "collaborative": float(pair_terms[0]),
            "held_before": float(pair_terms[1]),
            "popular": float(pair_terms[2]),
        }
        for group in ("related_products", "life_stage", "activity"):
            out[group] = float(terms[self._groups == group].sum())
        return out

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """The (up to three) groups that raise this product's score most for this customer.

        Only groups with a positive contribution are named; if none is positive, the least
        negative one is, so an offer always carries the model's strongest actual argument.
        """
        contrib = self.contributions(record, product_index)
        ranked = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)
        chosen = [code for code, value in ranked if value > 0][:3] or [ranked[0][0]]
        return [Reason(code=code, text=REASON_TEXTS[code]) for code in chosen]

    def reasons_many(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> list[list[Reason]]:
        """:meth:`reasons` for each of ``product_indices`` (the batch call of the service)."""
        return [self.reasons(record, int(j)) for j in product_indices]


# == Gradient-boosted ranker (the production model) =========================================
#
# The two-stage linear model above stays for models registered before the boosted ranker
# (and as a hand-buildable scorer in tests). New versions are ``BoostedRecommender``s.

LEGACY_PROFILE_INPUTS = (
    "age",
    "tenure_months",
    "income",
    "risk_level",
    "n_products",
    "products_added_3m",
    "products_dropped_3m",
    "active",
    "employee",
    "resident",
    "logins_3m_avg",
    "months_since_login",
    "balance",
    "balance_change_3m",
)
PROFILE_INPUTS = (
    *LEGACY_PROFILE_INPUTS,
    "products_added_1m",
    "products_dropped_1m",
)
"""Customer-level record fields read as numbers (``None`` -> NaN, booleans -> 0/1)."""

LEGACY_HOLDING_PREFIXES = ("held__", "held_prev__", "months_held__", "dropped__")
HOLDING_PREFIXES = (
    *LEGACY_HOLDING_PREFIXES,
    "months_since_held__",
    "times_held__",
    "adds__",
    "held_pattern__",
)
"""Per-product holding history read from the record: now, one snapshot back, run length,
held earlier in the lookback but not now, snapshots since last held, snapshots held,
times added, and the holdings 1..5 snapshots back packed as bits.

Models registered before the deeper history have no ``profile_inputs`` /
``holding_prefixes`` of their own and read the ``LEGACY_*`` fields when unpickled."""

_GROUP_OF_PROFILE = {
    "age": "life_stage",
    "tenure_months": "life_stage",
    "income": "life_stage",
    "risk_level": "life_stage",
    "tier": "life_stage",
    "segment": "popular_in_segment",
    "n_products": "related_products",
    "acquisition_channel": "life_stage",
    "region": "life_stage",
}


@dataclass(frozen=True)
class TreeEnsemble:
    """Fitted trees as flat node arrays, evaluated for many rows and trees at once.

    Trees are padded to ``nodes`` nodes each and stored as ``(trees, nodes)`` arrays with
    the semantics of scikit-learn's HistGradientBoosting predictor nodes: at a split node,
    a missing value goes left iff ``missing_left``, otherwise ``x <= threshold`` goes left.
    ``tree_class[t]`` is the output column that tree ``t`` adds its leaf value to;
    ``baseline`` holds the initial raw prediction per output column. Leaves point to
    themselves, so ``depth`` synchronous steps bring every (tree, row) to its leaf.
    ``expected`` is each node's training-count-weighted mean leaf value (leaves: their
    value), which :meth:`contributions` uses to credit each split's feature.
    """

    feature: np.ndarray  # (T, N) int64, 0 at leaves
    threshold: np.ndarray  # (T, N) float64
    missing_left: np.ndarray  # (T, N) bool
    left: np.ndarray  # (T, N) int64
    right: np.ndarray  # (T, N) int64
    value: np.ndarray  # (T, N) float64, leaf values (0 at split nodes)
    expected: np.ndarray  # (T, N) float64
    tree_class: np.ndarray  # (T,) int64
    baseline: np.ndarray  # (C,) float64
    depth: int

    @classmethod
    def constant(cls, baseline: np.ndarray) -> TreeEnsemble:
        """No trees: every row gets ``baseline`` (a model before fitting, or a prior)."""
        empty = np.zeros((0, 1))
        index = np.zeros((0, 1), dtype=np.int64)
        return cls(
            feature=index,
            threshold=empty,
            missing_left=np.zeros((0, 1), dtype=bool),
            left=index,
            right=index,
            value=empty,
            expected=empty,
            tree_class=np.zeros(0, dtype=np.int64),
            baseline=np.asarray(baseline, dtype=np.float64),
            depth=0,
        )

    @classmethod
    def pack(
        cls,
        trees: Sequence[dict[str, np.ndarray]],
        tree_class: np.ndarray,
        baseline: np.ndarray,
        depth: int,
    ) -> TreeEnsemble:
        """Trees given one by one (per node: ``feature``, ``threshold``, ``missing_left``,
        ``left``, ``right``, ``value``, ``expected``, root first) padded to one width:
        padding nodes are leaves of value 0 that point to themselves."""
        width = max((len(t["feature"]) for t in trees), default=1)
        shape = (len(trees), width)
        packed = {
            "feature": np.zeros(shape, dtype=np.int64),
            "threshold": np.zeros(shape),
            "missing_left": np.zeros(shape, dtype=bool),
            "left": np.tile(np.arange(width, dtype=np.int64), (len(trees), 1)),
            "right": np.tile(np.arange(width, dtype=np.int64), (len(trees), 1)),
            "value": np.zeros(shape),
            "expected": np.zeros(shape),
        }
        for t, tree in enumerate(trees):
            for name, array in packed.items():
                array[t, : len(tree[name])] = tree[name]
        return cls(
            **packed,
            tree_class=np.asarray(tree_class, dtype=np.int64),
            baseline=np.asarray(baseline, dtype=np.float64),
            depth=depth,
        )

    def leaves(self, x: np.ndarray, trees: np.ndarray | None = None) -> np.ndarray:
        """Leaf index reached by every (tree, row), shape ``(T', rows)``."""
        sel = slice(None) if trees is None else trees
        feature, threshold = self.feature[sel], self.threshold[sel]
        missing_left, left, right = self.missing_left[sel], self.left[sel], self.right[sel]
        n_trees = feature.shape[0]
        node = np.zeros((n_trees, x.shape[0]), dtype=np.int64)
        tree = np.arange(n_trees)[:, None]
        for _ in range(self.depth):
            f = feature[tree, node]
            v = x[np.arange(x.shape[0])[None, :], f]
            go_left = np.where(np.isnan(v), missing_left[tree, node], v <= threshold[tree, node])
            node = np.where(go_left, left[tree, node], right[tree, node])
        return node

    def raw(self, x: np.ndarray, *, compiled: bool = True) -> np.ndarray:
        """Raw predictions (log-odds scale) ``(rows, C)``, as ``decision_function``.

        ``compiled`` walks each row through each tree with numba; ``False`` walks all
        rows and trees one synchronous step at a time in numpy. Same leaves either way.
        """
        if compiled and _raw_compiled is not None and self.feature.shape[0]:
            width = self.feature.shape[1]
            starts = np.arange(self.feature.shape[0], dtype=np.int64)[:, None] * width
            return _raw_compiled(
                np.ascontiguousarray(x, dtype=np.float64),
                self.feature.ravel(),
                self.threshold.ravel(),
                self.missing_left.ravel(),
                (self.left + starts).ravel(),
                (self.right + starts).ravel(),
                self.value.ravel(),
                self.tree_class,
                self.baseline,
                width,
            )
        leaf_values = self.value[np.arange(self.value.shape[0])[:, None], self.leaves(x)]
        out = np.tile(self.baseline, (x.shape[0], 1))
        for c in range(len(self.baseline)):
            out[:, c] += leaf_values[self.tree_class == c].sum(axis=0)
        return out

    def contributions(self, x: np.ndarray, output: int) -> tuple[np.ndarray, float]:
        """Per-feature contributions to one row's raw output ``output`` and the bias.

        Each split on a tree's path credits its feature with the change in expected value
        (child minus parent); the bias is the baseline plus every root's expected value,
        so ``bias + contributions.sum()`` equals the raw output.
        """
        trees = np.flatnonzero(self.tree_class == output)
        out = np.zeros(x.shape[1])
        bias = float(self.baseline[output] + self.expected[trees, 0].sum())
        node = np.zeros(len(trees), dtype=np.int64)
        row = x[0]
        for _ in range(self.depth):
            f = self.feature[trees, node]
            v = row[f]
            go_left = np.where(
                np.isnan(v), self.missing_left[trees, node], v <= self.threshold[trees, node]
            )
            child = np.where(go_left, self.left[trees, node], self.right[trees, node])
            moved = child != node
            delta = self.expected[trees, child] - self.expected[trees, node]
            np.add.at(out, f[moved], delta[moved])
            node = child
        return out, bias


def _leaves_numpy(flat: FlatTrees, row: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Leaf positions of ``row`` in the trees ``chosen``, in numpy (the fallback without
    numba): every tree one synchronous step at a time. The comparisons of
    :func:`_descend`, so the same leaves."""
    at = chosen * flat.width
    for _ in range(flat.depth):
        value = row.take(flat.feature.take(at))
        go_left = np.where(
            np.isnan(value), flat.missing_left.take(at), value <= flat.threshold.take(at)
        )
        to = np.where(go_left, flat.left.take(at), flat.right.take(at))
        if np.array_equal(to, at):
            break
        at = to
    return at


def _descend_one(
    row: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    at: int,
) -> int:
    """From flat node ``at`` down to its leaf: at a split, a missing value goes left iff
    ``missing_left``, else ``x <= threshold`` does, exactly as sklearn's predictor. A
    leaf's children are itself. Every compiled walk below goes down through this one."""
    while True:
        v = row[feature[at]]
        go_left = missing_left[at] if np.isnan(v) else v <= threshold[at]
        to = left[at] if go_left else right[at]
        if to == at:
            return at
        at = to


def _raw_rows(
    x: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    tree_class: np.ndarray,
    baseline: np.ndarray,
    width: int,
) -> np.ndarray:
    """Raw outputs ``(rows, C)`` of flat trees for every row of ``x``."""
    n_outputs = baseline.shape[0]
    out = np.empty((x.shape[0], n_outputs))
    total = np.empty(n_outputs)
    for r in range(x.shape[0]):
        total[:] = 0.0
        row = x[r]
        for t in range(tree_class.shape[0]):
            at = _descend(row, feature, threshold, missing_left, left, right, t * width)
            total[tree_class[t]] += value[at]
        for c in range(n_outputs):
            out[r, c] = baseline[c] + total[c]
    return out


def _leaf_credits_one(
    leaves: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    outputs: np.ndarray,
    path_start: np.ndarray,
    path_feature: np.ndarray,
    path_delta: np.ndarray,
    n_columns: int,
) -> np.ndarray:
    """Per (slot, column) credits ``(len(outputs), n_columns)`` from the leaves alone.

    Each tree of output ``outputs[slot]`` adds its leaf's credit path
    (:func:`_leaf_paths`: every split from the root down, its feature and the change in
    expected value it made) to ``out[slot]``: the additions a walk down from the root
    would make, in its order, so the same numbers as crediting a recorded walk. The paths
    of a leaf lie side by side in memory: no chain of dependent loads through parent
    pointers into node arrays that are mostly out of cache when the reasons run."""
    n_slots = outputs.shape[0]
    out = np.zeros((n_slots, n_columns))
    for slot in range(n_slots):
        c = outputs[slot]
        for i in range(start[c], start[c + 1]):
            leaf = leaves[order[i]]
            for k in range(path_start[leaf], path_start[leaf + 1]):
                out[slot, path_feature[k]] += path_delta[k]
    return out


def _leaf_credits_numpy(
    leaves: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    outputs: np.ndarray,
    path_start: np.ndarray,
    path_feature: np.ndarray,
    path_delta: np.ndarray,
    n_columns: int,
) -> np.ndarray:
    """:func:`_leaf_credits_one` in numpy: the chosen leaves' paths gathered and summed
    per cell (the sums in another order, so equal up to rounding)."""
    parts = [order[start[c] : start[c + 1]] for c in outputs]
    trees = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    slots = np.repeat(np.arange(len(outputs)), [len(part) for part in parts])
    at = leaves.take(trees)
    first, count = path_start.take(at), path_start.take(at + 1) - path_start.take(at)
    entry = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
    cells = np.repeat(slots, count) * n_columns + path_feature.take(entry)
    credits = np.bincount(cells, weights=path_delta.take(entry), minlength=len(outputs) * n_columns)
    return credits.reshape(len(outputs), n_columns)


def _leaf_paths(
    left: np.ndarray, parent: np.ndarray, feature: np.ndarray, expected: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every leaf's credit path, root first: ``path_feature[path_start[p] :
    path_start[p + 1]]`` are the features of the splits above leaf ``p`` and
    ``path_delta`` the change in expected value each made (child minus split, the same
    subtraction a walk makes); empty for splits and padding. Built once per model, all
    leaves climbing together."""
    position = np.arange(len(left), dtype=np.int64)
    at = position[left == position]  # leaves (and padding, which has no parent)
    owner, level = at, 0
    owners, levels, splits, deltas = [at[:0]], [at[:0]], [at[:0]], [np.zeros(0)]
    while at.size:
        up = parent.take(at)
        keep = up >= 0
        at, up, owner = at[keep], up[keep], owner[keep]
        owners.append(owner)
        levels.append(np.full(len(owner), level, dtype=np.int64))
        splits.append(up)
        deltas.append(expected.take(at) - expected.take(up))
        at, level = up, level + 1
    owner_all, level_all = np.concatenate(owners), np.concatenate(levels)
    order = np.lexsort((-level_all, owner_all))  # by leaf, then root first
    counts = np.bincount(owner_all, minlength=len(left))
    return (
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        feature.take(np.concatenate(splits)[order]).astype(np.int64),
        np.concatenate(deltas)[order],
    )


_descend = compile_kernel(_descend_one) or _descend_one  # the batch walk calls it compiled
_raw_compiled = compile_kernel(_raw_rows)
_raw_leaves_compiled = raw_leaves_compiled  # the request path's walks: packed nodes
_leaves_compiled = leaves_compiled
_leaf_credits_compiled = compile_kernel(_leaf_credits_one)


def _parents(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Flat position of every node's parent, -1 for roots (and padding and leaves'
    self-loops are not edges: a split node is one whose children are other nodes)."""
    position = np.arange(len(left), dtype=np.int64)
    split = left != position
    parent = np.full(len(left), -1, dtype=np.int64)
    parent[left[split]] = position[split]
    parent[right[split]] = position[split]
    return parent


class FlatTrees:
    """A :class:`TreeEnsemble`'s node arrays flattened to 1-D for walking ONE row.

    On the request path a single row goes through every tree, on the compact copy of the
    nodes in ``packed`` (``core.scoring.packed_trees``: the same leaves as the float
    comparisons of these arrays, which the numpy fallback and the tests walk). Leaves are
    reported as flat ``tree * width + node`` positions.

    For the reasons, a row is explained from the leaves its scoring walk ended in
    (:meth:`raw_leaves_row`, :meth:`leaf_credits`): each leaf's credit path (the splits
    above it, root first, see :func:`_leaf_paths`) is precomputed from the ``parent``
    pointers, and ``order`` / ``start`` list each output's trees (``order[start[c] :
    start[c + 1]]`` is ``trees_of[c]``) so the compiled code reaches them without building
    index arrays per request.
    """

    def __init__(self, trees: TreeEnsemble) -> None:
        width = trees.feature.shape[1] if trees.feature.size else 1
        starts = np.arange(trees.feature.shape[0], dtype=np.int64) * width
        self.width = width
        self.feature = trees.feature.ravel()
        self.threshold = trees.threshold.ravel()
        self.missing_left = trees.missing_left.ravel()
        self.left = (trees.left + starts[:, None]).ravel()
        self.right = (trees.right + starts[:, None]).ravel()
        self.value = trees.value.ravel()
        self.expected = trees.expected.ravel()
        self.tree_class = trees.tree_class
        self.n_outputs = len(trees.baseline)
        self.baseline = trees.baseline
        self.depth = trees.depth
        self.all_trees = np.arange(trees.feature.shape[0], dtype=np.int64)
        self.trees_of = [np.flatnonzero(trees.tree_class == c) for c in range(self.n_outputs)]
        roots = trees.expected[:, 0] if trees.expected.size else np.zeros(0)
        self.bias = trees.baseline + np.bincount(
            trees.tree_class, weights=roots, minlength=self.n_outputs
        )
        self.parent = _parents(self.left, self.right)
        self.path_start, self.path_feature, self.path_delta = _leaf_paths(
            self.left, self.parent, self.feature, self.expected
        )
        self.order = np.argsort(self.tree_class, kind="stable").astype(np.int64)
        counts = np.bincount(self.tree_class, minlength=self.n_outputs)
        self.start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.packed = PackedTrees.of(
            self.feature,
            self.threshold,
            self.missing_left,
            self.left,
            self.right,
            self.value,
            width,
        )

    def raw_leaves_row(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs ``(C,)`` of one row through every tree, and the flat position of
        the leaf each tree ends in ``(T,)``, read-only.

        The scoring walk of the request path. It keeps the one integer per tree that the
        reasons need: a leaf's credit path is known without a comparison
        (:meth:`leaf_credits`), so the shown products' trees are not walked a second time
        (that walk, an eighth of the trees, cost about half as much as the whole scoring
        walk in the served app: comparisons, branch misses, an allocated path per call).
        Recording every tree's full path was rejected: it writes ``depth + 1`` positions
        for every tree although only the shown products' few are explained, and slowed the
        scoring walk (~250 us instead of ~200 us on the demo model) by more than it saved.
        The raw outputs are bit-identical to :meth:`TreeEnsemble.raw` of the row (same
        leaves, same sums in the same order); without numba, equal up to rounding.
        """
        if _raw_leaves_compiled is None:
            leaves = _leaves_numpy(self, np.asarray(row, dtype=np.float64), self.all_trees)
            weights = self.value.take(leaves)
            raw = self.baseline + np.bincount(
                self.tree_class, weights=weights, minlength=self.n_outputs
            )
        else:
            packed = self.packed
            raw, leaves = _raw_leaves_compiled(
                np.ascontiguousarray(row, dtype=np.float64),
                packed.node,
                packed.value,
                packed.node_start,
                packed.cuts,
                packed.cut_start,
                self.tree_class,
                self.baseline,
                self.width,
            )
        leaves.flags.writeable = False  # shared by the request's reasons
        return raw, leaves

    def leaves_of(self, row: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Leaf positions ``(T,)`` of ``row`` in the trees of ``outputs`` only (-1 for the
        other trees), read-only: for reasons asked outside the request's shared block,
        where no scoring walk's leaves are at hand: the 3 shown products' trees are ~60 us
        against ~250 us for every tree (demo model, both ensembles)."""
        outputs = np.asarray(outputs, dtype=np.int64)
        if _leaves_compiled is None:
            parts = [self.order[self.start[c] : self.start[c + 1]] for c in outputs]
            trees = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            leaves = np.full(len(self.tree_class), -1, dtype=np.int64)
            leaves[trees] = _leaves_numpy(self, np.asarray(row, dtype=np.float64), trees)
        else:
            packed = self.packed
            leaves = _leaves_compiled(
                np.ascontiguousarray(row, dtype=np.float64),
                packed.node,
                packed.node_start,
                packed.cuts,
                packed.cut_start,
                self.order,
                self.start,
                outputs,
                self.width,
            )
        leaves.flags.writeable = False
        return leaves

    def leaf_credits(
        self, leaves: np.ndarray, outputs: np.ndarray, n_columns: int, *, compiled: bool = True
    ) -> np.ndarray:
        """Per-column credits ``(len(outputs), n_columns)`` of the outputs' trees, from the
        leaves of :meth:`raw_leaves_row` or :meth:`leaves_of`. Each split on a tree's path
        credits its feature with the change in expected value (child minus parent), so
        ``bias[c] + credits[slot].sum()`` is output ``c``'s raw score."""
        outputs = np.asarray(outputs, dtype=np.int64)
        use = _leaf_credits_compiled if compiled else None
        credit = use if use is not None else _leaf_credits_numpy
        return credit(
            leaves,
            self.order,
            self.start,
            outputs,
            self.path_start,
            self.path_feature,
            self.path_delta,
            n_columns,
        )


def _softmax(raw: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: raw outputs -> a probability per product (sums to 1)."""
    shifted = raw - raw.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(raw: np.ndarray) -> np.ndarray:
    """Log of :func:`_softmax`, computed stably."""
    shifted = raw - raw.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _ScoringWalk(NamedTuple):
    """One row's scoring walk: the blended scores and the leaf each tree ended in (the
    pair trees' when the blend uses them), kept per request for the reasons."""

    raw: np.ndarray
    leaves: np.ndarray
    pair_leaves: np.ndarray | None


@dataclass
class BoostedRecommender:
    """Which product a customer adds next: a multiclass gradient-boosted ranker.

    One class per product; the inputs are one customer's profile, the holding history of
    every product (now, one snapshot back, run length, dropped earlier) and the
    collaborative score of every product (``projection @ held``, the closed-form ALS
    projection described at the top of this module). The model is fitted on customers
    who added something, so its softmax is "given that this customer adds a product,
    which one"; products already held are ranked by the caller's filter, not here.

    Scoring is numpy and numba only (no sklearn, no pandas): one feature vector from the
    record, one compiled walk of every tree (:class:`FlatTrees`); a bagged model's trees
    are one ensemble. Implements ``RecommenderScorer``.
    """

    product_ids: list[str]
    popularity: np.ndarray  # (P,) share of training additions per product
    projection: np.ndarray  # (P, P) collaborative projection
    segments: tuple[str, ...]  # segment levels one-hot encoded
    tiers: tuple[str, ...]
    trees: TreeEnsemble
    profile_inputs: tuple[str, ...] = PROFILE_INPUTS
    holding_prefixes: tuple[str, ...] = HOLDING_PREFIXES
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """More text fields one-hot encoded: ``(field, levels)`` pairs, e.g. the acquisition
    channel's most frequent codes (a value outside the levels, or unknown, is all zeros)."""
    pair_trees: TreeEnsemble | None = None
    """The pair ranker: one binary "does the customer add THIS product" model, fitted on
    (customer, product not held) rows with the product's own history in shared columns,
    exported as one set of trees per product that read this model's own input row
    (``training.recommender.export_pair_trees``); output ``p`` is product ``p``'s log-odds."""
    pair_weight: float = 0.0
    """Blend: a product's score is the multiclass log-probability plus ``pair_weight`` x the
    pair ranker's log-odds (0: the multiclass ranker alone)."""
    blend_temperature: float = 1.0
    """The propensity is the softmax of the blended scores divided by this (fitted on the
    training additions, ``training.pair_ranker.fit_temperature``): adding the pair log-odds
    sharpens the distribution, and the arbitration multiplies propensity by product value,
    so the propensity must stay a probability, not just an order. The order is the same
    whatever the temperature."""
    kind: str = "recommender"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._record_fields = list(self.profile_inputs) + [
            prefix + p for prefix in self.holding_prefixes for p in self.product_ids
        ]
        self.feature_names = [
            *self._record_fields,
            "segment",
            "tier",
            *(name for name, _ in self.categories),
        ]
        self._groups = self._column_groups()
        self._own_history = self._own_history_columns()
        self._onehot_columns = self._onehot_positions()
        self._n_onehot = sum(len(levels) for levels in self._text_levels())
        self._prepare_explanations()

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("profile_inputs", LEGACY_PROFILE_INPUTS)
        state.setdefault("holding_prefixes", LEGACY_HOLDING_PREFIXES)
        state.setdefault("categories", ())
        state.setdefault("pair_trees", None)  # models registered before the pair ranker
        state.setdefault("pair_weight", 0.0)
        state.setdefault("blend_temperature", 1.0)
        self.__dict__.update(state)
        self.__post_init__()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # -- inputs -----------------------------------------------------------------------------

    @property
    def record_fields(self) -> list[str]:
        """Numeric record fields read, in input order (then segment, tier, collaborative)."""
        return list(self._record_fields)

    @property
    def columns(self) -> list[str]:
        """Names of the model's input columns, in order."""
        return [
            *self._record_fields,
            *(f"segment={s}" for s in self.segments),
            *(f"tier={t}" for t in self.tiers),
            *(f"{name}={level}" for name, levels in self.categories for level in levels),
            *(f"collaborative__{p}" for p in self.product_ids),
        ]

    @property
    def text_fields(self) -> list[str]:
        """Text record fields one-hot encoded, in the order :meth:`design` takes them."""
        return ["segment", "tier", *(name for name, _ in self.categories)]

    def design(self, raw: np.ndarray, *texts: np.ndarray) -> np.ndarray:
        """Model inputs from the record fields ``raw`` ``(rows, fields)`` and the text
        fields ``texts`` (object arrays, one per :attr:`text_fields`).

        Shared by :meth:`score` (one row) and training (all rows): same numbers either way.
        """
        n, first = len(self.product_ids), len(self.profile_inputs)
        held = (raw[:, first : first + n] > 0).astype(np.float64)  # NaN > 0 is False
        collab = (held[:, None, :] * self.projection[None, :, :]).sum(axis=2)
        onehot = [
            (values == level).astype(np.float64)[:, None]
            for values, known in zip(texts, self._text_levels(), strict=True)
            for level in known
        ]
        return np.hstack([raw, *onehot, collab])

    def record_inputs(self, record: FeatureRecord) -> np.ndarray:
        """One record as a model input row ``(1, columns)``: the numbers of :meth:`design`.

        Why not :meth:`design` on a one-row batch: on the request path that is ~30 numpy
        calls on tiny arrays (one one-hot column per text level, then ``hstack``), whose
        per-call overhead was most of its ~60-100 us. Here the row is filled in place: the
        one-hot columns by a dict lookup of the text value (a hash match followed by
        ``==``, the comparison ``design`` makes), the collaborative columns by the same
        elementwise product and last-axis sum as ``design`` (so the same bits).
        """
        # numpy converts booleans to 0/1 and None to NaN itself (floats: text -> NaN)
        raw = floats(list(map(record.get, self._record_fields)))
        n, first = len(self.product_ids), len(self.profile_inputs)
        row = np.zeros(len(raw) + self._n_onehot + n)
        row[: len(raw)] = raw
        try:
            for name, columns in self._onehot_columns:
                for j in columns.get(record.get(name), ()):
                    row[j] = 1.0
        except TypeError:  # an unhashable text value: compare level by level
            texts = [np.array([record.get(name)], dtype=object) for name in self.text_fields]
            return self.design(raw[None, :], *texts)
        held = (raw[first : first + n] > 0).astype(np.float64)  # as design's, ~10 us less
        row[len(raw) + self._n_onehot :] = (held[None, :] * self.projection).sum(axis=1)
        return row[None, :]

    def _onehot_positions(self) -> list[tuple[str, dict[object, list[int]]]]:
        """Per text field, each level's input column(s) (for :meth:`record_inputs`)."""
        at = len(self._record_fields)
        out: list[tuple[str, dict[object, list[int]]]] = []
        for name, known in zip(self.text_fields, self._text_levels(), strict=True):
            columns: dict[object, list[int]] = {}
            for level in known:
                columns.setdefault(level, []).append(at)
                at += 1
            out.append((name, columns))
        return out

    def _text_levels(self) -> list[tuple[str, ...]]:
        """The one-hot levels of each of :attr:`text_fields`, in input column order."""
        return [tuple(self.segments), tuple(self.tiers), *(tuple(lv) for _, lv in self.categories)]

    # -- scoring ----------------------------------------------------------------------------

    def _row(self, record: FeatureRecord) -> np.ndarray:
        """The record's model inputs as a 1-D row, computed once per request (shared)."""
        return shared_result(self, record, "inputs", lambda: self.record_inputs(record)[0])

    def _raw(self, record: FeatureRecord) -> np.ndarray:
        """The record's blended scores (log scale), computed once per request (shared)."""
        return self._walked(record).raw

    def _walked(self, record: FeatureRecord) -> _ScoringWalk:
        """The record's scoring walk (scores and leaves), computed once per request
        (shared): the reasons of the request's offers are credited from its leaves."""
        return shared_result(self, record, "walk", lambda: self._walk_row(self._row(record)))

    @property
    def _explains_pair(self) -> bool:
        """The blend adds the pair ranker (its trees are walked and credited)."""
        return self._pair_flat is not None and bool(self.pair_weight)

    def _walk_row(self, row: np.ndarray) -> _ScoringWalk:
        raw, leaves = self._flat.raw_leaves_row(row)
        pair_raw, pair_leaves = None, None
        pair = self._pair_flat if self._explains_pair else None
        if pair is not None:  # with weight 0 the pair ranker changes neither output
            pair_raw, pair_leaves = pair.raw_leaves_row(row)
        return _ScoringWalk(self._blend(raw, pair_raw), leaves, pair_leaves)

    def _blend(self, raw: np.ndarray, pair_raw: np.ndarray | None) -> np.ndarray:
        """Multiclass raw outputs (and the pair ranker's, if any) -> blended log scores."""
        scores = _log_softmax(raw)
        if pair_raw is not None and self.pair_weight:
            scores = (scores + self.pair_weight * pair_raw) / self.blend_temperature
        return scores

    def blended_inputs(self, x: np.ndarray) -> np.ndarray:
        """Blended scores (log scale) ``(rows, P)`` for model input rows: the multiclass
        log-probability plus ``pair_weight`` x the pair ranker's log-odds, over
        ``blend_temperature``."""
        pair = self.pair_trees.raw(x) if self.pair_trees is not None else None
        return self._blend(self.trees.raw(x), pair)

    def score(self, record: FeatureRecord) -> np.ndarray:
        """A propensity per product: the softmax of the blended scores over the fitted
        temperature (sums to 1; without a pair ranker, the multiclass probabilities)."""
        return _softmax(self._raw(record))

    def score_with_reasons(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """:meth:`score` and :meth:`reasons` for each of ``product_indices`` (the request
        path's whole model work for one customer): one input row, one scoring walk of
        every tree, the reasons credited from the leaves it ended in."""
        if not sharing():  # outside the service's block: share the row between the two
            with shared_transforms():
                return self.score(record), self.reasons_many(record, product_indices)
        return self.score(record), self.reasons_many(record, product_indices)

    def score_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(rows, P)`` for model input rows (batch evaluation)."""
        out = np.empty((x.shape[0], len(self.product_ids)))
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            out[start : start + _CHUNK_ROWS] = _softmax(
                self.blended_inputs(x[start : start + _CHUNK_ROWS])
            )
        return out

    # -- explanations -----------------------------------------------------------------------

    def _column_groups(self) -> list[str]:
        groups = [_GROUP_OF_PROFILE.get(c, "activity") for c in self.profile_inputs]
        groups += ["related_products"] * (len(self.holding_prefixes) * len(self.product_ids))
        groups += ["popular_in_segment"] * len(self.segments) + ["life_stage"] * len(self.tiers)
        for name, levels in self.categories:
            groups += [_GROUP_OF_PROFILE.get(name, "activity")] * len(levels)
        groups += ["collaborative"] * len(self.product_ids)
        recent = {"products_added_3m", "products_added_1m"}
        pairs = zip(self.columns, groups, strict=True)
        return ["recent_activity" if c in recent else g for c, g in pairs]

    def contributions(self, record: FeatureRecord, product_index: int) -> dict[str, float]:
        """Each reason group's share of product ``product_index``'s raw score (log-odds).

        ``popular`` is the product's bias (its base rate) relative to the average product's;
        a customer's own history of this product counts as ``held_before`` when they held
        it within the lookback; products added lately as ``recent_activity``.
        """
        return self.contributions_many(record, [product_index])[0]

    def contributions_many(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> list[dict[str, float]]:
        """:meth:`contributions` for several products, credited from one set of leaves
        (:meth:`_leaves`)."""
        return self._group_credits(record, product_indices)

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """The (up to three) groups that raise this product's score most for this customer;
        the strongest one alone if none raises it (an offer always carries an argument)."""
        return self.reasons_many(record, [product_index])[0]

    def reasons_many(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> list[list[Reason]]:
        """:meth:`reasons` for each of ``product_indices`` (in that order). Inside
        ``shared_transforms`` they are credited from the leaves of :meth:`score`'s walk
        (no tree walked again); outside, from one walk of the products' trees only."""
        out = []
        for contrib in self._group_credits(record, product_indices):
            ranked = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)
            chosen = [code for code, value in ranked if value > 1e-12][:3] or [ranked[0][0]]
            out.append([Reason(code=code, text=REASON_TEXTS[code]) for code in chosen])
        return out

    def _leaves(
        self, record: FeatureRecord, outputs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Leaf positions of the record in the multiclass trees and (when the blend uses
        it) the pair trees, valid at least for the trees of ``outputs``.

        Inside ``shared_transforms`` these are the scoring walk's (shared with
        :meth:`score`, walked by whichever comes first); outside, nothing else would use a
        full walk, so only the products' trees are walked (a few of ``C``: about 4x cheaper
        than walking every tree, :meth:`FlatTrees.leaves_of`).
        """
        if sharing():
            walk = self._walked(record)
            return walk.leaves, walk.pair_leaves
        row = self._row(record)
        pair = self._pair_flat if self._explains_pair else None
        pair_leaves = pair.leaves_of(row, outputs) if pair is not None else None
        return self._flat.leaves_of(row, outputs), pair_leaves

    def _group_credits(
        self, record: FeatureRecord, product_indices: Sequence[int]
    ) -> list[dict[str, float]]:
        indices = [int(j) for j in product_indices]
        if not indices:
            return []
        outputs = np.array(indices, dtype=np.int64)
        leaves, pair_leaves = self._leaves(record, outputs)
        n_columns = len(self._groups)
        credits = self._flat.leaf_credits(leaves, outputs, n_columns)
        pair = self._pair_flat if self._explains_pair else None
        if pair is not None and pair_leaves is not None:  # the blend's second term
            credits = credits + self.pair_weight * pair.leaf_credits(
                pair_leaves, outputs, n_columns
            )
        by_group = credits @ self._group_matrix
        out = []
        for row, grouped, j in zip(credits, by_group, indices, strict=True):
            contrib = dict(zip(REASON_TEXTS, grouped.tolist(), strict=True))
            own = self._own_history[j]
            if self._held_before(record, j):
                moved = float(row[own].sum())
                contrib["held_before"] += moved
                contrib["related_products"] -= moved
            contrib["popular"] = float(self._flat.bias[j] - self._mean_bias)
            if pair is not None:
                contrib["popular"] += self.pair_weight * float(pair.bias[j] - self._pair_mean_bias)
            out.append(contrib)
        return out

    def _held_before(self, record: FeatureRecord, product_index: int) -> bool:
        """The customer held the product at some snapshot of the lookback (or dropped it)."""
        pid = self.product_ids[product_index]
        for prefix in ("held_prev__", "dropped__", "times_held__"):
            value = _number(record.get(prefix + pid))
            if isinstance(value, int | float) and value > 0:
                return True
        return False

    def _own_history_columns(self) -> list[np.ndarray]:
        """Per product, the input columns of its own history (all but ``held__``)."""
        position = {name: i for i, name in enumerate(self.columns)}
        own = [p for p in self.holding_prefixes if p != "held__"]
        return [
            np.array([position[prefix + pid] for prefix in own], dtype=np.int64)
            for pid in self.product_ids
        ]

    def _prepare_explanations(self) -> None:
        """The flat trees (with the packed nodes and the leaves' credit paths, built here rather
        than pickled, so models pickled before them load unchanged), the mean class bias
        and the column -> reason group matrix."""
        self._flat = FlatTrees(self.trees)
        self._mean_bias = float(np.mean(self._flat.bias)) if len(self._flat.bias) else 0.0
        self._pair_flat = FlatTrees(self.pair_trees) if self.pair_trees is not None else None
        self._pair_mean_bias = (
            float(np.mean(self._pair_flat.bias)) if self._pair_flat is not None else 0.0
        )
        codes = list(REASON_TEXTS)
        matrix = np.zeros((len(self._groups), len(codes)))
        matrix[np.arange(len(self._groups)), [codes.index(g) for g in self._groups]] = 1.0
        self._group_matrix = matrix


def _number(value: object) -> object:
    """Booleans as 0/1 and everything else unchanged (``floats`` handles None and text)."""
    if isinstance(value, bool):
        return float(value)
    return value
