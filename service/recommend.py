"""The request path: one customer on one channel -> a few suitable offers.

``recommend`` is the whole path, top to bottom: fetch features (one Redis round trip) ->
:func:`decide` (score -> churn risk -> filter -> rank, top k -> reasons) -> respond.
``decide`` touches neither Redis nor the network, so tests drive it directly with any
catalogue, record and scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from core.catalogue import Catalogue, Product
from core.scoring.base import ChurnScorer, FeatureRecord, Reason, RecommenderScorer
from core.settings import Settings
from core.suitability import CustomerFacts, Exclusion, split_suitable
from service.churn_risk import ChurnBand, ChurnRisk, assess_churn_risk
from service.customer import customer_facts
from service.decision import Decision, DegradedReason, Offer
from service.fallback import fallback_order, lowest_risk_only
from service.feature_fetch import FeatureLookup, fetch_features
from service.ranking import rank
from service.runtime import Runtime
from service.schemas import (
    ChurnRiskOut,
    FeatureSetOut,
    OfferOut,
    ReasonOut,
    RecommendationRequest,
    RecommendationResponse,
)

RETENTION_PRIORITY = Reason("retention", "retention priority: churn risk high")


def recommend(
    request: RecommendationRequest, request_id: str, runtime: Runtime
) -> RecommendationResponse:
    """Answer one recommendation request (see the module docstring)."""
    state = runtime.state.current  # one snapshot for the whole request
    lookup = fetch_features(
        runtime.redis,
        runtime.store,
        state.feature_set,
        request.customer_id,
        runtime.metrics.feature_fetch_duration,
    )
    decision = decide(
        lookup,
        catalogue=state.catalogue,
        recommender=state.recommender_scorer,
        churn_model=state.churn_scorer,
        k=request.k,
        today=datetime.now(UTC).date(),
        settings=runtime.settings,
    )
    runtime.metrics.observe_decision(decision)
    return respond(request, request_id, decision, state.model_versions)


def decide(
    lookup: FeatureLookup,
    *,
    catalogue: Catalogue,
    recommender: RecommenderScorer | None,
    churn_model: ChurnScorer | None,
    k: int,
    today: date,
    settings: Settings,
) -> Decision:
    """Score, assess churn risk, filter, rank and explain: the pure part of the request path.

    ``today`` is the decision date, not the feature set's ``as_of``: an assessment that
    expired since the features were materialized counts as expired.
    """
    record = lookup.record
    degraded = lookup.problem or (DegradedReason.NO_MODEL if recommender is None else None)
    facts = customer_facts(record) if record is not None else CustomerFacts()

    # Score: the model's propensities, or the fallback's popularity order.
    fallback = fallback_order(catalogue, recommender) if degraded is not None else None
    if fallback is not None:
        scores = fallback.scores
    else:
        assert recommender is not None and record is not None
        scores = model_scores(recommender, record)

    # Churn risk: needs the record and a churn model; high risk puts retention first.
    churn = assess_churn_risk(
        churn_model,
        record,
        settings.churn_medium_threshold,
        settings.churn_high_threshold,
    )
    candidates = offer_candidates(catalogue, churn)

    # Filter: the fallback is R1 only; then suitability and eligibility as of today.
    capped: list[Exclusion] = []
    if fallback is not None:
        candidates, capped = lowest_risk_only(candidates)
    allowed, excluded = split_suitable(
        candidates, facts, today, settings.risk_assessment_validity_days
    )

    # Rank, keep the top k, and say why each one is there.
    offers = []
    for position, (product, score) in enumerate(rank(allowed, scores, k), start=1):
        if product.retention:
            reasons = [RETENTION_PRIORITY]
        elif fallback is not None:
            reasons = [fallback.reason]
        else:
            assert recommender is not None and record is not None
            reasons = model_reasons(recommender, record, product)
        offers.append(Offer(product, position, score, reasons))

    return Decision(
        offers=offers,
        churn_risk=churn,
        exclusions=capped + excluded,
        degraded_reason=degraded,
        feature_set=lookup.feature_set,
    )


def offer_candidates(catalogue: Catalogue, churn: ChurnRisk | None) -> list[Product]:
    """Products that may be offered at all: holdable ones, plus retention when risk is high."""
    if churn is not None and churn.band is ChurnBand.HIGH:
        return [p for p in catalogue.products if p.retention] + catalogue.holdable
    return catalogue.holdable


def model_scores(scorer: RecommenderScorer, record: FeatureRecord) -> dict[str, float]:
    """Product id -> propensity; refuses an output that does not match ``product_ids``."""
    values = scorer.score(record)
    if len(values) != len(scorer.product_ids):
        raise ValueError(
            f"recommender returned {len(values)} scores for {len(scorer.product_ids)} products"
        )
    return dict(zip(scorer.product_ids, map(float, values), strict=True))


def model_reasons(
    scorer: RecommenderScorer, record: FeatureRecord, product: Product
) -> list[Reason]:
    return list(scorer.reasons(record, scorer.product_ids.index(product.id)))


def respond(
    request: RecommendationRequest,
    request_id: str,
    decision: Decision,
    model_versions: dict[str, str],
) -> RecommendationResponse:
    """The HTTP body of a decision."""
    churn = decision.churn_risk
    feature_set = decision.feature_set
    return RecommendationResponse(
        request_id=request_id,
        customer_id=request.customer_id,
        channel=request.channel,
        offers=[
            OfferOut(
                product_id=offer.product.id,
                name=offer.product.name,
                rank=offer.rank,
                score=offer.score,
                reasons=_reasons_out(offer.reasons),
            )
            for offer in decision.offers
        ],
        churn_risk=(
            ChurnRiskOut(
                probability=churn.probability,
                band=churn.band.value,
                reasons=_reasons_out(churn.reasons),
            )
            if churn is not None
            else None
        ),
        model_versions=model_versions,
        feature_set=(
            FeatureSetOut(version=feature_set.version, as_of=feature_set.as_of)
            if feature_set is not None
            else None
        ),
        degraded=decision.degraded,
        degraded_reason=decision.degraded_reason.value if decision.degraded_reason else None,
    )


def _reasons_out(reasons: Sequence[Reason]) -> list[ReasonOut]:
    return [ReasonOut(code=r.code, text=r.text) for r in reasons]
