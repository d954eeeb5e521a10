"""The compiled kernels of the tree runtime (:mod:`core.scoring.trees`) and the packed nodes
they walk on the request path.

Why packed nodes: walking one row through thousands of trees is bound by memory, not by
arithmetic, and on the request path most of the model is out of the CPU caches. The padded
node arrays of the batch walk (``feature``, ``threshold``, ``missing_left``, ``left``,
``right``: five arrays, every tree padded to the widest) are several times larger than the
same trees packed as one ``int64`` word per node, without padding, the leaf values beside
them; the request path's walks read the packed copy.

The encoding keeps every comparison exact. A split's float threshold becomes its rank
``k`` among the distinct thresholds the trees use on that input (``cuts``), and before a
walk the row's value of each input becomes its code: the number of cuts strictly below
it. For sorted cuts, ``value <= cuts[k]`` exactly when ``code <= k``, so a walk on codes
reaches the same leaf as one on floats (NaN gets :data:`MISSING` and follows the node's
missing-value side, as sklearn's predictor does). The tests check the leaves against a
plain-Python walk of the float arrays and the sums against ``TreeEnsemble.raw``.

A node word, low bits first: input (16 bits), threshold rank (16), left and right child
offsets within the tree (15 each), missing-goes-left (1). A leaf is a node whose two
children are itself.

Each kernel is plain Python over numpy arrays, compiled by numba when it is installed
(:func:`compile_kernel`); the ``*_compiled`` names are ``None`` without numba, and the
callers then use their numpy fallbacks (the same leaves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

njit: Callable[..., Any] | None
try:  # compiled walks; without numba the padded float arrays are walked in numpy instead
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency, this is a safety net
    njit = None

MISSING = 0xFFFF
"""The code of a missing (NaN) input; no threshold rank reaches it."""
_MAX_INPUTS = 0xFFFF
_MAX_CUTS = MISSING  # ranks 0 .. MISSING - 1
_MAX_NODES = 1 << 15  # child offsets are 15 bits


def compile_kernel(function: Callable[..., Any]) -> Callable[..., Any] | None:
    """``function`` compiled by numba on its first call, the machine code cached on disk
    (``__pycache__`` or numba's user cache) for the next process; without a writable cache
    folder it is compiled per process instead. ``None`` without numba."""
    if njit is None:  # pragma: no cover
        return None
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:  # pragma: no cover - no cache locator available
        return njit(cache=False, nogil=True)(function)


@dataclass(frozen=True)
class PackedTrees:
    """Packed nodes of padded flat trees (tree ``t``'s slots at ``t * width ...``).

    ``node[node_start[t] + i]`` is slot ``i`` of tree ``t`` (the padding past its last
    real node dropped), ``value`` the leaf values beside them. Walks return leaves as
    padded flat positions (``t * width + i``), so the parent pointers and expected values
    of the flat arrays still apply to them.
    """

    node: np.ndarray  # (N,) int64 packed words
    value: np.ndarray  # (N,) float64
    node_start: np.ndarray  # (T + 1,) int64
    cuts: np.ndarray  # (K,) float64: each input's distinct thresholds, ascending
    cut_start: np.ndarray  # (inputs + 1,) int64: input j's cuts are cuts[cut_start[j]:...]
    width: int

    @classmethod
    def of(
        cls,
        feature: np.ndarray,
        threshold: np.ndarray,
        missing_left: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        value: np.ndarray,
        width: int,
    ) -> PackedTrees:
        """Pack flat padded arrays (``left`` / ``right`` are flat positions; a node whose
        children are itself is a leaf or padding)."""
        position = np.arange(len(feature), dtype=np.int64)
        split = left != position
        inputs = int(feature[split].max()) + 1 if split.any() else 1
        if inputs > _MAX_INPUTS or width > _MAX_NODES:
            raise ValueError(
                f"trees too large to pack: {inputs} inputs (max {_MAX_INPUTS}), "
                f"{width} nodes per tree (max {_MAX_NODES})"
            )
        cuts, cut_start, rank = _threshold_ranks(feature[split], threshold[split], inputs)
        code = np.zeros(len(feature), dtype=np.int64)
        code[split] = rank
        base = position - position % width
        word = (
            np.where(split, feature, 0).astype(np.int64)
            | code << 16
            | (left - base) << 32
            | (right - base) << 47
            | missing_left.astype(np.int64) << 62
        )
        n_trees = len(feature) // width
        # A tree's real nodes end at its last slot that is a split or a split's child.
        real = split.copy()
        real[left[split]] = True
        real[right[split]] = True
        real[position % width == 0] = True
        used = (real.reshape(n_trees, width) * np.arange(1, width + 1)).max(axis=1)
        keep = (np.arange(width)[None, :] < used[:, None]).ravel()
        node_start = np.concatenate([[0], np.cumsum(used)]).astype(np.int64)
        return cls(
            node=np.ascontiguousarray(word[keep]),
            value=np.ascontiguousarray(value[keep], dtype=np.float64),
            node_start=node_start,
            cuts=cuts,
            cut_start=cut_start,
            width=width,
        )

    def codes(self, row: np.ndarray) -> np.ndarray:
        """The row's input codes (numpy; the compiled walks compute their own)."""
        return _row_codes(np.ascontiguousarray(row, dtype=np.float64), self.cuts, self.cut_start)


def _threshold_ranks(
    feature: np.ndarray, threshold: np.ndarray, inputs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each input's distinct split thresholds (ascending, concatenated), where each
    input's start, and every split's rank among its input's thresholds."""
    order = np.lexsort((threshold, feature))
    f, t = feature[order], threshold[order]
    first = np.ones(len(f), dtype=bool)
    first[1:] = (f[1:] != f[:-1]) | (t[1:] != t[:-1])
    cuts, cut_feature = t[first], f[first]
    cut_start = np.searchsorted(cut_feature, np.arange(inputs + 1)).astype(np.int64)
    if len(cuts) and np.diff(cut_start).max() >= _MAX_CUTS:
        raise ValueError(f"an input has more than {_MAX_CUTS - 1} distinct thresholds")
    rank_sorted = np.cumsum(first) - 1 - cut_start[f]
    rank = np.empty(len(f), dtype=np.int64)
    rank[order] = rank_sorted
    return cuts.astype(np.float64), cut_start, rank


def _row_codes(row: np.ndarray, cuts: np.ndarray, cut_start: np.ndarray) -> np.ndarray:
    """Per input, how many of its cuts are strictly below the row's value (a binary
    search); :data:`MISSING` for NaN."""
    inputs = cut_start.shape[0] - 1
    codes = np.empty(inputs, dtype=np.int64)
    for j in range(inputs):
        v = row[j]
        if np.isnan(v):
            codes[j] = MISSING
            continue
        lo, hi = cut_start[j], cut_start[j + 1]
        while lo < hi:
            mid = (lo + hi) >> 1
            if cuts[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        codes[j] = lo - cut_start[j]
    return codes


def _descend_packed(codes: np.ndarray, node: np.ndarray, base: int) -> int:
    """From the root at ``base`` down to the leaf; its offset within the tree."""
    at = base
    while True:
        word = node[at]
        left = (word >> 32) & 0x7FFF
        right = (word >> 47) & 0x7FFF
        if left == right:  # a leaf: both children are itself
            return at - base
        code = codes[word & 0xFFFF]
        if code <= (word >> 16) & 0xFFFF or (code == MISSING and (word >> 62) & 1 == 1):
            at = base + left
        else:
            at = base + right


def _raw_leaves_packed(
    row: np.ndarray,
    node: np.ndarray,
    value: np.ndarray,
    node_start: np.ndarray,
    cuts: np.ndarray,
    cut_start: np.ndarray,
    tree_class: np.ndarray,
    baseline: np.ndarray,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs ``(C,)`` of one row and the padded flat position of each tree's leaf
    ``(T,)``. Leaf values are summed per output in tree order, as ``TreeEnsemble.raw``
    sums them, so the outputs are bit-identical to it."""
    codes = _row_codes(row, cuts, cut_start)
    n_outputs = baseline.shape[0]
    total = np.zeros(n_outputs)
    leaves = np.empty(tree_class.shape[0], dtype=np.int64)
    for t in range(tree_class.shape[0]):
        offset = _descend_packed(codes, node, node_start[t])
        leaves[t] = t * width + offset
        total[tree_class[t]] += value[node_start[t] + offset]
    out = np.empty(n_outputs)
    for c in range(n_outputs):
        out[c] = baseline[c] + total[c]
    return out, leaves


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
    leaf's children are itself. The batch walk (:func:`_raw_rows`) goes down through it."""
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

    Each tree of output ``outputs[slot]`` adds its leaf's credit path (built by
    ``core.scoring.trees.FlatTrees``: every split from the root down, its feature and the
    change in expected value it made) to ``out[slot]``: the additions a walk down from the
    root would make, in its order, so the same numbers as crediting a recorded walk. The paths
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


def leaf_credits_numpy(
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


# Each compiled on its first call (or loaded from numba's cache); a compiled kernel calls
# the kernels it uses compiled, so those are bound to their compiled versions first.
_row_codes = compile_kernel(_row_codes) or _row_codes  # type: ignore[assignment]
_descend_packed = compile_kernel(_descend_packed) or _descend_packed  # type: ignore[assignment]
_descend = compile_kernel(_descend_one) or _descend_one
raw_rows_compiled = compile_kernel(_raw_rows)
"""Batch walk of the padded float arrays: ``TreeEnsemble.raw``."""
raw_leaves_compiled = compile_kernel(_raw_leaves_packed)
"""The request path's scoring walk on packed nodes: raw outputs and every tree's leaf."""
leaf_credits_compiled = compile_kernel(_leaf_credits_one)
"""Per-column credits of the outputs' trees from their leaves' credit paths."""
