"""Churn risk of one customer: the churn model's probability, a band and its reasons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.scoring.base import ChurnScorer, FeatureRecord, Reason


class ChurnBand(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ChurnRisk:
    probability: float
    band: ChurnBand
    reasons: list[Reason]


def churn_band(probability: float, medium_threshold: float, high_threshold: float) -> ChurnBand:
    """``high`` from ``high_threshold`` up, ``medium`` from ``medium_threshold`` up, else low."""
    if probability >= high_threshold:
        return ChurnBand.HIGH
    if probability >= medium_threshold:
        return ChurnBand.MEDIUM
    return ChurnBand.LOW


def assess_churn_risk(
    scorer: ChurnScorer | None,
    record: FeatureRecord | None,
    medium_threshold: float,
    high_threshold: float,
) -> ChurnRisk | None:
    """The customer's churn risk, or ``None`` when there is no churn model or no record."""
    if scorer is None or record is None:
        return None
    probability = float(scorer.predict_proba(record))
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"churn model returned {probability!r}, not a probability")
    band = churn_band(probability, medium_threshold, high_threshold)
    return ChurnRisk(probability, band, list(scorer.reasons(record)))
