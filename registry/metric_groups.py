"""Metric names as MLflow shows them: grouped by prefix, read back without it.

A run logs ``quality/roc_auc``, ``data/holdout_customers``, ``time/train_seconds``,
``model/ranker_trees``: the MLflow UI then lists quality apart from counts, timings and
model facts. Everything that reads metrics through ``Registry`` (the gate, ``compare``,
``list``, the service's model info) gets the plain names, so runs logged before grouping
read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

GROUPS = ("quality", "data", "time", "model")
DATA = frozenset({"rows", "customers", "train_rows", "train_examples", "train_snapshots"})
MODEL = frozenset({"blend_temperature", "n_features"})


def group_of(name: str) -> str:
    """The group of a plain metric name (counts and base rates are data, not quality)."""
    if name.endswith("_seconds"):
        return "time"
    if name in MODEL or name.endswith("_trees"):
        return "model"
    if name in DATA or name.startswith(("holdout_", "pair_rows")):
        return "data"
    return "quality"


def grouped(name: str) -> str:
    """``roc_auc`` -> ``quality/roc_auc``; a name with a group prefix stays as it is."""
    head, sep, _ = name.partition("/")
    if sep and head in GROUPS:
        return name
    return f"{group_of(name)}/{name}"


def plain(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics as read from a run, the group prefixes removed."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        head, sep, rest = name.partition("/")
        out[rest if sep and head in GROUPS else name] = value
    return out
