"""Repeated stratified k-fold CV of the response candidates (``nbo evaluate response --repeats``).

Why repeat: on the Bank Marketing dev file the out-of-fold ROC-AUC of one model moves by
about 0.004 between fold seeds, more than any change of the model, so one split is a noisy
figure. Repeat ``r`` uses fold seed ``seed + r`` for the split and the models (exactly what
``--seed seed + r`` does alone); the candidate is chosen by its mean ROC-AUC over the
repeats and every reported metric is that mean. One repeat is :func:`cross_validate`
itself, with the same keys and numbers.
"""

from __future__ import annotations

from statistics import fmean, stdev
from typing import Any

from training.datasets import Progress
from training.response import (
    ALGORITHMS,
    DEFAULT_SEED,
    ResponseData,
    cross_validate,
    out_of_fold,
    score,
)

METRICS = ("roc_auc", "pr_auc", "brier", "top_decile_lift")
"""The metrics averaged over repeats that also get ``<metric>_sd`` and
``<metric>_per_repeat`` (``rows`` is the same in every repeat)."""


def fold_seeds(seed: int, repeats: int) -> list[int]:
    """``seed, seed + 1, ..., seed + repeats - 1``; fewer than one repeat is refused."""
    if repeats < 1:
        raise ValueError(f"repeats {repeats}: at least 1")
    return list(range(seed, seed + repeats))


def repeated_cross_validate(
    data: ResponseData,
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    repeats: int = 1,
    algorithms: tuple[str, ...] = ALGORITHMS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The keys of :func:`cross_validate`, each the mean over the repeats' fold seeds; with
    more than one repeat also ``<metric>_sd`` (sample standard deviation across repeats)
    and ``<metric>_per_repeat`` of the chosen candidate's :data:`METRICS` and of each
    candidate's ``roc_auc_<algorithm>``, ``repeats`` and ``fold_seeds``."""
    seeds = fold_seeds(seed, repeats)
    if repeats == 1:
        return cross_validate(data, folds, seed, algorithms, progress)
    runs: dict[str, list[dict[str, float]]] = {a: [] for a in algorithms}
    for s in seeds:
        for algorithm in algorithms:
            if progress:
                progress(f"{folds}-fold CV of {algorithm}, fold seed {s}")
            runs[algorithm].append(score(data.target, out_of_fold(data, algorithm, folds, s)))
    means = {a: {k: fmean(r[k] for r in runs[a]) for k in runs[a][0]} for a in algorithms}
    best = max(algorithms, key=lambda a: means[a]["roc_auc"])
    per_repeat = {m: [r[m] for r in runs[best]] for m in METRICS}
    per_repeat |= {f"roc_auc_{a}": [r["roc_auc"] for r in runs[a]] for a in algorithms}
    result: dict[str, Any] = {
        **means[best],
        "algorithm": best,
        **{f"roc_auc_{a}": means[a]["roc_auc"] for a in algorithms},
    }
    for name, values in per_repeat.items():
        result[f"{name}_sd"] = stdev(values)
        result[f"{name}_per_repeat"] = values
    return {**result, "repeats": repeats, "fold_seeds": seeds}
