"""Use a customer's precomputed scores (``core.precomputed``) in place of scoring online.

:class:`PrecomputedRecord` is the :class:`~core.scoring.base.PreparedRecord` the decision
needs from the recommender: the stored scores, and each product's stored reasons; a product
whose reasons were not stored (outside the customer's best-scored ``top_reasons``) is
explained online, from the record, by the same model - so the answer is the one the online
path gives for the same inputs, whichever products are shown. :func:`precomputed_churn` is
the churn risk from the stored probability and reasons, banded by today's thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.precomputed import PrecomputedScores
from core.scoring.base import FeatureRecord, PreparedRecord, Reason, RecommenderScorer
from service.decision.churn_risk import ChurnRisk, churn_band


@dataclass(eq=False, slots=True)
class PrecomputedRecord:
    """Stored scores and reasons; the record is prepared online only if a reason is missing."""

    stored: PrecomputedScores
    recommender: RecommenderScorer
    record: FeatureRecord
    _online: PreparedRecord | None = field(default=None, init=False)

    @property
    def scores(self) -> np.ndarray:
        return self.stored.scores

    def reasons(self, product_indices: Sequence[int]) -> list[list[Reason]]:
        stored = self.stored.reasons
        missing = [j for j in product_indices if j not in stored]
        online: dict[int, list[Reason]] = {}
        if missing:
            if self._online is None:
                self._online = self.recommender.prepare(self.record)
            online = dict(zip(missing, self._online.reasons(missing), strict=True))
        return [list(stored[j]) if j in stored else online[j] for j in product_indices]


def precomputed_churn(
    stored: PrecomputedScores, medium_threshold: float, high_threshold: float
) -> ChurnRisk | None:
    """The churn risk of the stored probability (None: the set was made without a model)."""
    if stored.churn_probability is None:
        return None
    band = churn_band(stored.churn_probability, medium_threshold, high_threshold)
    return ChurnRisk(stored.churn_probability, band, list(stored.churn_reasons))
