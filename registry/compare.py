"""Two versions of one model side by side: metrics, params, training data lineage, and the
promotion gate's finding for the second version against the first."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from registry.client import Registry
from registry.noninferiority import (
    FINGERPRINT_TAG,
    KIND_TAG,
    Difference,
    comparability,
    difference,
    evaluation,
)

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
    """``gate`` judges ``right`` (the candidate) against ``left`` as the gate would against
    the champion; ``gate_problem`` says why it could not (other data, no metric)."""

    name: str
    left: int
    right: int
    rows: list[Row]
    gate: Difference | None = None
    gate_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data (``nbo registry compare --json``)."""
        return {
            "model": self.name,
            "left": self.left,
            "right": self.right,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "gate_problem": self.gate_problem,
            "rows": [{**asdict(r), "differs": r.differs} for r in self.rows],
        }


def compare(
    registry: Registry, name: str, left: int, right: int, margin: float | None = None
) -> Comparison:
    """Every metric and param of either version's run, the lineage tags, and the gate's
    difference ``right - left`` on the primary metric (``margin`` defaults to
    ``NBO_PROMOTION_MARGIN``).

    Unknown model or version -> :class:`registry.client.ModelNotFoundError`.
    """
    margin = registry.settings.promotion_margin if margin is None else margin
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
    reference, candidate = evaluation(registry, a), evaluation(registry, b)
    problem = comparability(candidate, reference)
    gate = None if problem else difference(registry, candidate, reference, margin)
    return Comparison(name, left, right, rows, gate, problem)


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
