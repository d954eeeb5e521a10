"""What one recommendation decided, before it is turned into an HTTP response.

These types are the hand-over between the decision logic (``recommend.decide``), the
metrics (exclusions, degraded answers) and the response schema, and later the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from core.catalogue import Product
from core.scoring.base import Reason
from core.suitability import Exclusion
from features.online_store import FeatureSetInfo
from service.decision.acceptance import Acceptance
from service.decision.arbitration import Priority
from service.decision.churn_risk import ChurnRisk
from service.decision.moments import Moments

PRECOMPUTED = "precomputed"
ONLINE = "online"
"""``Decision.scores_source``: the model's scores and reasons were read from the customer's
precomputed scores (``core.precomputed``) or computed in the request."""


class DegradedReason(StrEnum):
    """Why an answer came from the popularity fallback instead of the model."""

    NO_FEATURE_SET = "no_feature_set"
    FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"
    INVALID_FEATURE_RECORD = "invalid_feature_record"
    UNKNOWN_CUSTOMER = "unknown_customer"
    NO_MODEL = "no_model"


class Offer(NamedTuple):
    """One product put in front of the customer, at ``rank`` (1 = first); a named tuple
    (immutable, built faster than a frozen dataclass)."""

    product: Product
    rank: int
    score: float | None  # model propensity or popularity; None without a model score
    reasons: list[Reason]  # the model's (or fallback's) reasons, then the arbitration trace
    priority: float | None = None  # arbitration priority (``service.decision.arbitration``)
    trigger: str | None = None  # what made a treatment a candidate (``service.decision.moments``)
    contract: str | None = None  # the pseudonymous contract key of a maturity treatment


@dataclass(frozen=True)
class Decision:
    """Offers plus everything needed to explain them (and what was filtered out, and why)."""

    offers: list[Offer]
    churn_risk: ChurnRisk | None
    exclusions: list[Exclusion]
    degraded_reason: DegradedReason | None
    feature_set: FeatureSetInfo | None  # the feature set the record was looked up in
    # Arbitration inputs and contact state, for the audit record:
    scores: dict[str, float] = field(default_factory=dict)  # candidate scores (propensities)
    priorities: list[Priority] = field(default_factory=list)  # every ranked candidate
    retention_eligible: bool = False
    contact: dict[str, object] = field(default_factory=dict)  # ContactState.summary
    decided_at: datetime | None = None
    moments: Moments = field(default_factory=Moments)  # stage, tier, triggered treatments
    # P(accept) and channel affinity used (``service.decision.acceptance``), preferred channel:
    acceptance: Acceptance = field(default_factory=Acceptance)
    # Shadow mode: the challenger's offers for the same request, recorded, never shown
    # ({"model", "version", "offers": [{product_id, rank, score}]}; ``service.decision.variant``).
    shadow: dict[str, object] | None = None
    # Where the model scores came from: PRECOMPUTED or ONLINE; None for the fallback.
    scores_source: str | None = None

    @classmethod
    def of(
        cls,
        *,
        offers: list[Offer],
        churn_risk: ChurnRisk | None,
        exclusions: list[Exclusion],
        degraded_reason: DegradedReason | None,
        feature_set: FeatureSetInfo | None,
        scores: dict[str, float],
        priorities: list[Priority],
        retention_eligible: bool,
        contact: dict[str, object],
        decided_at: datetime | None,
        moments: Moments,
        acceptance: Acceptance,
        scores_source: str | None,
        shadow: dict[str, object] | None = None,
    ) -> Decision:
        """The decision the constructor gives, built in one step.

        A frozen dataclass's ``__init__`` sets each of the fifteen fields through
        ``object.__setattr__``; filling the instance's ``__dict__`` at once costs about a
        third of that, once per request. Every field is given, so the instance is the
        constructor's (``tests/service/decision/test_decide_caches.py``).
        """
        decision = object.__new__(cls)
        decision.__dict__.update(
            offers=offers,
            churn_risk=churn_risk,
            exclusions=exclusions,
            degraded_reason=degraded_reason,
            feature_set=feature_set,
            scores=scores,
            priorities=priorities,
            retention_eligible=retention_eligible,
            contact=contact,
            decided_at=decided_at,
            moments=moments,
            acceptance=acceptance,
            shadow=shadow,
            scores_source=scores_source,
        )
        return decision

    @property
    def degraded(self) -> bool:
        return self.degraded_reason is not None

    @property
    def ranked_out(self) -> list[str]:
        """Ranked candidates neither shown nor excluded (by the daily cap): below the top k.
        With the offers and the exclusions, every product of the catalogue is accounted for."""
        gone = {offer.product.id for offer in self.offers}
        gone.update(e.product_id for e in self.exclusions)
        return [p.product.id for p in self.priorities if p.product.id not in gone]
