"""Churn risk of one customer: the churn model's probability, a band and its reasons."""

from __future__ import annotations

from dataclasses import dataclass

from core.scoring.base import ChurnScorer, FeatureRecord, Reason
from core.scoring.churn import ChurnBand, churn_band

__all__ = ["ChurnBand", "ChurnRisk", "assess_churn_risk", "churn_band"]


@dataclass(frozen=True)
class ChurnRisk:
    probability: float
    band: ChurnBand
    reasons: list[Reason]


def assess_churn_risk(
    scorer: ChurnScorer | None,
    record: FeatureRecord | None,
    medium_threshold: float,
    high_threshold: float,
) -> ChurnRisk | None:
    """The customer's churn risk, or ``None`` when there is no churn model or no record."""
    if scorer is None or record is None:
        return None
    # ``assess`` (LinearChurnModel) gives both from one pass over the record; any other
    # ChurnScorer is asked twice.
    assess = getattr(scorer, "assess", None)
    if callable(assess):
        probability, reasons = assess(record)
        probability = float(probability)
    else:
        probability = float(scorer.predict_proba(record))
        reasons = None
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"churn model returned {probability!r}, not a probability")
    band = churn_band(probability, medium_threshold, high_threshold)
    if reasons is None:
        reasons = scorer.reasons(record)
    return ChurnRisk(probability, band, list(reasons))
