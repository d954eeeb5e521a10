"""Two versions of one model side by side: metrics, params and training data lineage."""

from __future__ import annotations

from dataclasses import dataclass

from registry.client import Registry
from registry.promotion import FINGERPRINT_TAG, KIND_TAG

LINEAGE_TAGS = (KIND_TAG, FINGERPRINT_TAG)
"""Run tags shown in the lineage section (what the version was trained on)."""


@dataclass(frozen=True)
class Row:
    section: str  # "lineage" | "metric" | "param"
    key: str
    left: str
    right: str

    @property
    def differs(self) -> bool:
        return self.left != self.right


@dataclass(frozen=True)
class Comparison:
    name: str
    left: int
    right: int
    rows: list[Row]


def compare(registry: Registry, name: str, left: int, right: int) -> Comparison:
    """Every metric and param of either version's run, plus the lineage tags.

    Unknown model or version -> :class:`registry.client.ModelNotFoundError`.
    """
    a, b = registry.version(name, left), registry.version(name, right)
    run_a, run_b = registry.run_data(a.run_id), registry.run_data(b.run_id)
    rows = [
        Row("lineage", "aliases", ", ".join(a.aliases), ", ".join(b.aliases)),
        Row("lineage", "run", a.run_id or "", b.run_id or ""),
        Row(
            "lineage",
            "created (UTC)",
            f"{a.created_at:%Y-%m-%d %H:%M}",
            f"{b.created_at:%Y-%m-%d %H:%M}",
        ),
    ]
    for tag in LINEAGE_TAGS:
        rows.append(Row("lineage", tag, run_a.tags.get(tag, ""), run_b.tags.get(tag, "")))
    for key in sorted(run_a.metrics.keys() | run_b.metrics.keys()):
        rows.append(
            Row("metric", key, _metric(run_a.metrics.get(key)), _metric(run_b.metrics.get(key)))
        )
    for key in sorted(run_a.params.keys() | run_b.params.keys()):
        rows.append(Row("param", key, run_a.params.get(key, ""), run_b.params.get(key, "")))
    return Comparison(name, left, right, rows)


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
