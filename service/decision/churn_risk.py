"""Churn risk of one customer: the churn model's probability, a band and its reasons."""

from __future__ import annotations

from dataclasses import dataclass

from core.scoring.base import ChurnScorer, FeatureRecord, Reason, churn_assessment
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
    probability, reasons = churn_assessment(scorer, record)
    return ChurnRisk(
        probability, churn_band(probability, medium_threshold, high_threshold), reasons
    )
