"""Feature-importance bar plots logged as run artifacts (matplotlib, headless).

Two kinds of model, two measures: a boosted model's total split gain per input, and a linear
model's standardized coefficients (the change in log-odds for one standard deviation of the
input, so inputs on different scales compare). Both plots show the ``top`` largest, the
largest at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

TOP = 25
_POSITIVE = "#b5473a"  # raises the score
_NEGATIVE = "#3b6ea5"  # lowers it (and the colour of unsigned bars)


def _barh(
    labels: Sequence[str],
    values: np.ndarray,
    colours: Sequence[str],
    xlabel: str,
    title: str,
    path: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    # Height grows with the bar count so 25 labels stay readable; 8 x 7 in at 100 dpi at most.
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.23 * max(len(labels), 1)))
    try:
        ax.barh(list(labels)[::-1], values[::-1], color=list(colours)[::-1])
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def gain_plot(importances: pd.Series, path: Path, title: str, top: int = TOP) -> Path:
    """Bars of the ``top`` largest split gains (``importances``: gain per input name)."""
    largest = importances.sort_values(ascending=False).head(top)
    return _barh(
        [str(name) for name in largest.index],
        largest.to_numpy(dtype=np.float64),
        [_NEGATIVE] * len(largest),
        "total split gain",
        title,
        path,
    )


def coefficient_plot(
    columns: Sequence[str], weights: np.ndarray, path: Path, title: str, top: int = TOP
) -> Path:
    """Bars of the ``top`` largest ``|weight|`` of a linear model on standardized inputs,
    coloured by sign (red raises the score, blue lowers it)."""
    weights = np.asarray(weights, dtype=np.float64)
    if len(columns) != len(weights):
        raise ValueError(f"{len(columns)} column names for {len(weights)} weights")
    order = np.argsort(-np.abs(weights), kind="stable")[:top]
    return _barh(
        [f"{columns[k]} ({'+' if weights[k] >= 0 else '-'})" for k in order],
        np.abs(weights[order]),
        [_POSITIVE if weights[k] >= 0 else _NEGATIVE for k in order],
        "|standardized coefficient| (log-odds per standard deviation; red +, blue -)",
        title,
        path,
    )
