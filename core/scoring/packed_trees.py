"""Tree nodes packed for the request path: one 8-byte word per node, inputs compared as codes.

Why: walking one row through ~6,000 trees is bound by memory, not by arithmetic. By the
time a request scores, the other work of the worker (and the other processes on the
machine) has pushed most of the model out of the CPU caches, and the padded node arrays
the batch walk reads (``feature``, ``threshold``, ``missing_left``, ``left``, ``right``:
33 bytes per node in five arrays, every tree padded to the widest) stream ~6 MB per
request. Packed, the same trees take ~1 MB: one ``int64`` per node, no padding, the leaf
values beside them. Measured on the demo model with the caches flushed between rows:
~650 -> ~320 us for both ensembles (``docs/performance.md``); warm, ~310 -> ~250 us.

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


def _leaves_packed(
    row: np.ndarray,
    node: np.ndarray,
    node_start: np.ndarray,
    cuts: np.ndarray,
    cut_start: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    outputs: np.ndarray,
    width: int,
) -> np.ndarray:
    """Leaf positions ``(T,)`` of ``row`` in the trees of ``outputs`` only (trees
    ``order[start[c]:start[c + 1]]`` for each output ``c``); every other tree gets -1."""
    codes = _row_codes(row, cuts, cut_start)
    leaves = np.full(order.shape[0], -1, dtype=np.int64)
    for slot in range(outputs.shape[0]):
        c = outputs[slot]
        for i in range(start[c], start[c + 1]):
            t = order[i]
            leaves[t] = t * width + _descend_packed(codes, node, node_start[t])
    return leaves


# The compiled walks call these compiled.
_row_codes = compile_kernel(_row_codes) or _row_codes  # type: ignore[assignment]
_descend_packed = compile_kernel(_descend_packed) or _descend_packed  # type: ignore[assignment]
raw_leaves_compiled = compile_kernel(_raw_leaves_packed)
leaves_compiled = compile_kernel(_leaves_packed)
