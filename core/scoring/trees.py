"""The tree runtime: fitted gradient-boosted trees as numpy arrays, walked without sklearn.

:class:`TreeEnsemble` is what a scorer pickles: padded node arrays with the semantics of
scikit-learn's HistGradientBoosting predictor, walked for many rows at once (training,
batch evaluation). :class:`FlatTrees` is derived from it when a scorer is built or
unpickled: the request path's single-row walk on packed nodes and the per-feature credits
of the leaves that walk ended in. The compiled kernels live in
:mod:`core.scoring.tree_kernels`; they are looked up there at call time, so a ``None``
kernel (no numba) selects the numpy fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.scoring import tree_kernels as kernels
from core.scoring.tree_kernels import PackedTrees, leaf_credits_numpy


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
        walk = kernels.raw_rows_compiled if compiled else None
        if walk is not None and self.feature.shape[0]:
            width = self.feature.shape[1]
            starts = np.arange(self.feature.shape[0], dtype=np.int64)[:, None] * width
            return walk(
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
    numba): every tree one synchronous step at a time. The comparisons of the compiled
    walks, so the same leaves."""
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
    nodes in ``packed`` (:class:`core.scoring.tree_kernels.PackedTrees`: the same leaves as
    the float comparisons of these arrays, which the numpy fallback and the tests walk).
    Leaves are reported as flat ``tree * width + node`` positions.

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
        (:meth:`leaf_credits`), so explaining an offer walks no tree a second time, and the
        walk records no path (only a few products' trees are ever explained). The raw
        outputs are bit-identical to :meth:`TreeEnsemble.raw` of the row (same leaves, same
        sums in the same order); without numba, equal up to rounding.
        """
        walk = kernels.raw_leaves_compiled
        if walk is None:
            leaves = _leaves_numpy(self, np.asarray(row, dtype=np.float64), self.all_trees)
            weights = self.value.take(leaves)
            raw = self.baseline + np.bincount(
                self.tree_class, weights=weights, minlength=self.n_outputs
            )
        else:
            packed = self.packed
            raw, leaves = walk(
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
        leaves.flags.writeable = False  # kept with the scores for the reasons
        return raw, leaves

    def leaf_credits(
        self, leaves: np.ndarray, outputs: np.ndarray, n_columns: int, *, compiled: bool = True
    ) -> np.ndarray:
        """Per-column credits ``(len(outputs), n_columns)`` of the outputs' trees, from the
        leaves of :meth:`raw_leaves_row`. Each split on a tree's path
        credits its feature with the change in expected value (child minus parent), so
        ``bias[c] + credits[slot].sum()`` is output ``c``'s raw score."""
        outputs = np.asarray(outputs, dtype=np.int64)
        use = kernels.leaf_credits_compiled if compiled else None
        credit = use if use is not None else leaf_credits_numpy
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
