"""What one recommendation decided, before it is turned into an HTTP response.

These types are the hand-over between the decision logic (``recommend.decide``), the
metrics (exclusions, degraded answers) and the response schema, and later the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.catalogue import Product
from core.scoring.base import Reason
from core.suitability import Exclusion
from features.online_store import FeatureSetInfo
from service.churn_risk import ChurnRisk


class DegradedReason(StrEnum):
    """Why an answer came from the popularity fallback instead of the model."""

    NO_FEATURE_SET = "no_feature_set"
    FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"
    INVALID_FEATURE_RECORD = "invalid_feature_record"
    UNKNOWN_CUSTOMER = "unknown_customer"
    NO_MODEL = "no_model"


@dataclass(frozen=True)
class Offer:
    """One product put in front of the customer, at ``rank`` (1 = first)."""

    product: Product
    rank: int
    score: float | None  # model propensity or popularity; None for retention treatments
    reasons: list[Reason]


@dataclass(frozen=True)
class Decision:
    """Offers plus everything needed to explain them (and what was filtered out, and why)."""

    offers: list[Offer]
    churn_risk: ChurnRisk | None
    exclusions: list[Exclusion]
    degraded_reason: DegradedReason | None
    feature_set: FeatureSetInfo | None  # the feature set the record was looked up in

    @property
    def degraded(self) -> bool:
        return self.degraded_reason is not None
