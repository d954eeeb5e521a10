"""How the holdings features are computed: what is held now and over the lookback.

Each function takes a :class:`~features.pointintime.PointInTimeContext` and returns a
series indexed like ``ctx.index``; ``features.definitions`` names and types them. The
per-product builders take a product id and return such a function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from features.window_stats import trailing_run

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

PATTERN_LAGS = 5
"""``held_pattern__*`` packs whether the product was held 1..5 snapshots back."""


def _basket_codes(held: np.ndarray) -> np.ndarray:
    """One integer code per customer for the set of products held (``held``: product x customer).

    Bits are packed 62 products per word; with more than one word the rows are codes too.
    """
    words = []
    for start in range(0, held.shape[0], 62):
        part = held[start : start + 62].astype(np.int64)
        weights = np.left_shift(np.int64(1), np.arange(part.shape[0], dtype=np.int64))
        words.append(weights @ part)
    if len(words) == 1:
        return pd.factorize(words[0])[0]
    return np.unique(np.stack(words, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def held(ctx: PointInTimeContext) -> pd.Series:
    """Product ids held now, in catalogue order; one shared tuple per distinct basket."""
    held = ctx.held_now
    codes = _basket_codes(held)
    first = pd.Series(np.arange(ctx.size)).groupby(codes).first().to_numpy()
    ids = np.array(ctx.product_ids, dtype=object)
    baskets = np.empty(len(first), dtype=object)
    for code, customer in enumerate(first):
        baskets[code] = tuple(ids[held[:, customer]].tolist())
    return ctx.series(baskets[codes])


def n_products(ctx: PointInTimeContext) -> pd.Series:
    return ctx.series(ctx.held_now.sum(axis=0))


def changes_3m(
    direction: Literal["added", "dropped"],
) -> Callable[[PointInTimeContext], pd.Series]:
    """Products added (or dropped) over the last three month-to-month transitions.

    Null when there is no earlier snapshot to compare with.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        window = ctx.holdings[:, -4:, :]
        if window.shape[1] < 2:
            return ctx.nulls()
        before, after = window[:, :-1, :], window[:, 1:, :]
        moved = (after & ~before) if direction == "added" else (before & ~after)
        return ctx.series(moved.sum(axis=(0, 1)))

    return compute


def held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(ctx.held_now[ctx.product_position(product_id)].astype(np.int8))

    return compute


def held_prev_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        previous = ctx.held_at(1)
        if previous is None:
            return ctx.nulls()
        return ctx.series(previous[ctx.product_position(product_id)].astype(np.int8))

    return compute


def _by_product(
    ctx: PointInTimeContext, name: str, compute: Callable[[np.ndarray], np.ndarray]
) -> Callable[[str], np.ndarray]:
    """Row ``product`` of a ``(product, customer)`` statistic of the whole holdings cube,
    computed once per context for every product (one numpy pass, not one per product)."""
    table = ctx.shared(f"holdings:{name}", lambda: compute(ctx.holdings))
    return lambda product_id: table[ctx.product_position(product_id)]


def _months_held(cube: np.ndarray) -> np.ndarray:
    """Trailing snapshots held, per product and customer."""
    products, snapshots, customers = cube.shape
    by_snapshot = np.ascontiguousarray(cube.transpose(1, 0, 2)).reshape(snapshots, -1)
    return trailing_run(by_snapshot).reshape(products, customers)


def _dropped(cube: np.ndarray) -> np.ndarray:
    return (cube[:, :-1, :].any(axis=1) & ~cube[:, -1, :]).astype(np.int8)


def _months_since_held(cube: np.ndarray) -> np.ndarray:
    since = np.argmax(cube[:, ::-1, :], axis=1).astype(float)
    return np.where(cube.any(axis=1), since, np.nan)


def _times_held(cube: np.ndarray) -> np.ndarray:
    return cube.sum(axis=1)


def _adds(cube: np.ndarray) -> np.ndarray:
    return (cube[:, 1:, :] & ~cube[:, :-1, :]).sum(axis=1)


def months_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_by_product(ctx, "months_held", _months_held)(product_id))

    return compute


def dropped_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_by_product(ctx, "dropped", _dropped)(product_id))

    return compute


def months_since_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Snapshots since the product was last held (0 = held now); null if not in the lookback.

    The re-add signal: a payroll or a direct debit that stopped two months ago comes back
    far more often than one never held.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_by_product(ctx, "months_since_held", _months_since_held)(product_id))

    return compute


def times_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_by_product(ctx, "times_held", _times_held)(product_id))

    return compute


def adds_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Times the product went from not held to held within the lookback; null with one
    snapshot (no transition to count)."""

    def compute(ctx: PointInTimeContext) -> pd.Series:
        if ctx.holdings.shape[1] < 2:
            return ctx.nulls()
        return ctx.series(_by_product(ctx, "adds", _adds)(product_id))

    return compute


def held_pattern_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Holdings 1..``PATTERN_LAGS`` snapshots back as one binary number, the most recent
    lag as the most significant bit (16 = held last snapshot, 8 = two back, ...).

    One column instead of five: a tree's threshold on it splits on the most recent lags
    first, which is the order in which they matter. Snapshots before the lookback count
    as not held.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_by_product(ctx, "held_pattern", _held_pattern)(product_id))

    return compute


def _held_pattern(cube: np.ndarray) -> np.ndarray:
    """``held_pattern`` of every product: the snapshots 1..``PATTERN_LAGS`` back as bits."""
    pattern = np.zeros((cube.shape[0], cube.shape[2]), dtype=np.int64)
    latest = cube.shape[1] - 1
    for back in range(1, min(PATTERN_LAGS, latest) + 1):
        pattern += cube[:, latest - back, :].astype(np.int64) << (PATTERN_LAGS - back)
    return pattern


def changes_1m(
    direction: Literal["added", "dropped"],
) -> Callable[[PointInTimeContext], pd.Series]:
    """Products added (or dropped) at the latest transition; null with one snapshot."""

    def compute(ctx: PointInTimeContext) -> pd.Series:
        previous = ctx.held_at(1)
        if previous is None:
            return ctx.nulls()
        now = ctx.held_now
        moved = (now & ~previous) if direction == "added" else (previous & ~now)
        return ctx.series(moved.sum(axis=0))

    return compute
