"""Which products may be offered at all, and the degraded answer's order.

``offer_candidates``: the treatments the customer's moments triggered
(``service.decision.moments``), then the holdable products the lifecycle stage allows.
The degraded fallback (``fallback_order``, ``lowest_risk_only``): popular, lowest-risk
products, when no personal ranking is possible. It is used when the customer's record
cannot be read (unknown customer, no feature set, Redis down) or no recommender is loaded.
It is deliberately cautious: only R1 products are candidates, and they still go through
the same suitability and eligibility filter as a model's answer - with ``CustomerFacts()``
(everything unknown) when there is no record, so an age-, residency-, income- or
assets-restricted product is never offered blind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.catalogue import Catalogue, Product
from core.object_tables import ObjectTable
from core.scoring.base import Reason, RecommenderScorer
from core.suitability import LOWEST_RISK_LEVEL, Exclusion, Rule, partition
from service.decision.moments import Moments

POPULAR = Reason("popular", "one of the products customers add most often")
LOW_RISK_DEFAULT = Reason(
    "low_risk_default", "a low-risk product offered while no personal recommendation is available"
)


@dataclass(frozen=True)
class FallbackOrder:
    """The propensity each product gets in the fallback's arbitration, and the reason shown.

    ``shown_score`` is False when the propensity is a neutral placeholder, not a score worth
    showing (no recommender: the offer's ``score`` is then null).
    """

    scores: dict[str, float]
    reason: Reason
    shown_score: bool = True


def fallback_order(catalogue: Catalogue, recommender: RecommenderScorer | None) -> FallbackOrder:
    """Popularity from the recommender when one is loaded, else a neutral propensity of 1.

    With a neutral propensity, arbitration orders by business value x channel x levers.
    A product the recommender does not know (added to the catalogue after training) gets a
    popularity of 0: it may still be offered, after every product with known popularity.
    """
    if recommender is None:
        return FallbackOrder({p.id: 1.0 for p in catalogue.products}, LOW_RISK_DEFAULT, False)
    popularity = dict(zip(recommender.product_ids, map(float, recommender.popularity), strict=True))
    return FallbackOrder({p.id: popularity.get(p.id, 0.0) for p in catalogue.products}, POPULAR)


def lowest_risk_only(products: Iterable[Product]) -> tuple[list[Product], list[Exclusion]]:
    """Keep R1 products; every other one is excluded (rule ``suitability``) for the audit."""

    def above_lowest_risk(product: Product) -> Exclusion | None:
        if product.risk_level <= LOWEST_RISK_LEVEL:
            return None
        why = f"R{product.risk_level}: the fallback offers R1 only"
        return Exclusion(product.id, Rule.SUITABILITY, why)

    return partition(products, above_lowest_risk)


def offer_candidates(
    catalogue: Catalogue, moments: Moments
) -> tuple[list[Product], list[Exclusion]]:
    """Products that may be offered at all: the triggered treatments (catalogue order), then
    the holdable products the lifecycle stage allows (all of them without a stage rule).

    Every other product comes back as an exclusion (``not_triggered``: a treatment no moment
    triggered; ``lifecycle_stage``: a cross-sell product the stage does not allow), so the
    audit trail accounts for every product of the catalogue.

    The split depends on the catalogue, the stage, its levers and which treatments were
    triggered only, so it is worked out once per such combination and kept
    (:data:`_SPLITS`); each call gets lists of its own.
    """
    candidates, excluded = _SPLITS.get(
        (catalogue, moments.levers),
        (moments.stage, frozenset(moments.treatments)),
        lambda: _split_of(catalogue, moments),
    )
    return list(candidates), list(excluded)


_SPLITS: ObjectTable[tuple[tuple[Product, ...], tuple[Exclusion, ...]]] = ObjectTable(4096)
"""(catalogue, stage levers; stage, triggered treatments) -> the split of
:func:`offer_candidates` (``core.object_tables``: a reloaded catalogue or config gets
entries of its own)."""


def _split_of(
    catalogue: Catalogue, moments: Moments
) -> tuple[tuple[Product, ...], tuple[Exclusion, ...]]:
    candidates, excluded = _offer_candidates(catalogue, moments)
    return tuple(candidates), tuple(excluded)


def _offer_candidates(
    catalogue: Catalogue, moments: Moments
) -> tuple[list[Product], list[Exclusion]]:
    treatments: list[Product] = []
    cross_sell: list[Product] = []
    not_triggered: list[Exclusion] = []
    off_stage: list[Exclusion] = []
    for product in catalogue.products:  # one pass; treatments first in the result
        if product.retention:
            if product.id in moments.treatments:
                treatments.append(product)
            else:
                why = "no moment triggered this treatment"
                not_triggered.append(Exclusion(product.id, Rule.NOT_TRIGGERED, why))
        elif moments.allows_cross_sell(product):
            cross_sell.append(product)
        else:
            why = f"lifecycle stage {moments.stage} does not allow {product.category} offers"
            off_stage.append(Exclusion(product.id, Rule.STAGE, why))
    return treatments + cross_sell, not_triggered + off_stage
