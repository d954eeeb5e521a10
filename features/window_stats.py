"""NaN-aware arithmetic over a lookback window: months as rows, customers as columns.

An unknown month (NaN) is skipped, and a customer with no known month gets NaN, never a
warning or an error.
"""

from __future__ import annotations

import numpy as np


def nan_mean(window: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN; NaN where a column has no known value (no warnings)."""
    known = ~np.isnan(window)
    count = known.sum(axis=0)
    total = np.where(known, window, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def nan_sum(window: np.ndarray) -> np.ndarray:
    """Column sums ignoring NaN; NaN where a column has no known value."""
    known = ~np.isnan(window)
    total = np.where(known, window, 0.0).sum(axis=0)
    return np.where(known.any(axis=0), total, np.nan)


def relative(change: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``change / base`` where the base is known and positive, else NaN."""
    ok = ~np.isnan(change) & ~np.isnan(base) & (base > 0)
    return np.divide(change, base, out=np.full(change.shape, np.nan), where=ok)


def trailing_run(flags: np.ndarray) -> np.ndarray:
    """Per column, how many rows at the end (the latest months) are all True."""
    run = np.zeros(flags.shape[1], dtype=np.int64)
    alive = np.ones(flags.shape[1], dtype=bool)
    for row in flags[::-1]:
        alive &= row
        run += alive
    return run
