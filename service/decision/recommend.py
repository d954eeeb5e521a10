"""The request path: one customer on one channel -> a few suitable offers.

``recommend`` is the whole path, top to bottom: fetch features and contact state (one
Redis round trip) -> :func:`decide` (score -> churn risk -> moments: triggered treatments,
stage, tier -> filter: suitability and eligibility, channel rules, tier channels, contact
policy -> acceptance: P(accept) and channel affinity -> arbitrate -> top k within the
daily cap -> reasons) -> respond; once the answer
is sent, ``record`` hands the decision to the audit trail's write-behind queue
(``service.infra.audit_writer``: written in batches off the request path, so the read
stays the request's only Redis round trip) and counts it (:class:`Answer`).
``decide`` touches neither Redis nor the network, so tests drive it directly with any
catalogue, record, scorer and contact state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np

from core.catalogue import Catalogue, Product
from core.customer_facts import customer_facts
from core.decisioning import DecisioningConfig
from core.precomputed import PrecomputedScores, ScoresDecodeError, ScoreSetInfo, ScoreSetKeys
from core.pseudonym import pseudonymiser
from core.scoring.base import ChurnScorer, PreparedRecord, Reason, RecommenderScorer
from core.scoring.maturity import MaturityScorer
from core.scoring.response import ResponseScorer
from core.settings import Settings
from core.suitability import CustomerFacts, Exclusion, Rule, split_suitable
from features.audit_features import PACKED
from service.api.schemas import OfferBody, RecommendationRequest, ResponseBody
from service.decision.acceptance import assess_acceptance
from service.decision.arbitration import (
    Priority,
    arbitrate,
    arbitration_reasons,
    split_by_channel,
    top_offers,
)
from service.decision.audit_record import stored_record
from service.decision.candidates import fallback_order, lowest_risk_only, offer_candidates
from service.decision.churn_risk import assess_churn_risk
from service.decision.contact_policy import (
    ContactLimits,
    ContactRead,
    daily_capacity,
    split_by_contact_policy,
    split_by_tier_channel,
)
from service.decision.moments import churn_triggered, customer_moments
from service.decision.outcome import ONLINE, PRECOMPUTED, Decision, DegradedReason, Offer
from service.decision.precomputed import PrecomputedRecord, precomputed_churn
from service.decision.variant import (
    CONTROL,
    CONTROL_REASON,
    choose,
    hold_out,
    in_control,
    scorer_of,
    with_shadow,
)
from service.infra.feature_fetch import FeatureLookup, fetch_features
from service.infra.log import fields
from service.infra.metrics import StageClock
from service.runtime import Runtime

log = logging.getLogger(__name__)
_new_tuple = tuple.__new__


async def recommend(request: RecommendationRequest, request_id: str, runtime: Runtime) -> Answer:
    """Answer one recommendation request (see the module docstring)."""
    state = runtime.state.current  # one snapshot for the whole request
    settings = runtime.settings
    now = runtime.clock()
    pseudonym = pseudonymiser(settings)(request.customer_id)
    limits = ContactLimits.from_settings(settings)
    clock = StageClock()
    # Champion or challenger (service.decision.variant): chosen from this one snapshot, so a
    # response never mixes model versions; in shadow mode the challenger is also scored.
    choice = choose(state, request.customer_id, settings.challenger_share, settings.shadow_mode)
    # The precomputed scores, read in the same EVAL, when the score set was made from this
    # feature set and these models and the recommender serving this request is that one.
    use_stored = settings.precomputed_scores and choice.recommender is state.recommender
    score_set = state.precomputed if use_stored else None
    lookup = await fetch_features(
        runtime.reader,
        runtime.store,
        state.feature_set,
        request.customer_id,
        runtime.metrics.feature_fetch_duration,
        contact=ContactRead.for_customer(settings.contact_prefix, pseudonym, now, limits),
        scores_key=(
            ScoreSetKeys(settings.feature_prefix).customer(score_set.version, pseudonym)
            if score_set is not None
            else None
        ),
        pseudonym=pseudonym,
    )
    clock.lap("feature_fetch")
    if lookup.redis_error is not None:
        runtime.metrics.observe_redis_error("feature_fetch", lookup.redis_error)
    precomputed = _decode_scores(score_set, lookup.scores, request_id)
    decide_with = partial(
        decide,
        lookup,
        catalogue=state.catalogue,
        churn_model=state.churn_scorer,
        # The optional maturity slot (``service.infra.state``); none loaded -> no maturity
        # treatment.
        maturity_model=state.maturity_scorer,
        # The optional response slot: none loaded -> no P(accept) or channel affinity.
        response_model=state.response_scorer,
        k=request.k,
        now=now,
        settings=settings,
        channel=request.channel,
        decisioning=state.decisioning,
        clock=clock,
    )
    decision = decide_with(recommender=scorer_of(choice.recommender), precomputed=precomputed)
    if choice.shadow is not None:
        decision = with_shadow(
            decision, choice.shadow, decide_with(recommender=scorer_of(choice.shadow))
        )
    response = respond(request, request_id, decision, choice.model_versions)
    response["variant"] = choice.variant.value
    # Control group: the same decision is made (the audit keeps what would have been
    # offered), then only the service treatments are shown.
    held: list[OfferBody] = []
    if in_control(pseudonym, settings.control_share):
        response["offers"], held = hold_out(response["offers"])
        response["variant"] = CONTROL
        response["withheld_reason"] = CONTROL_REASON
    clock.lap("arbitration")

    async def record() -> None:
        """Once the answer is sent: the decision to the audit trail's queue, and its metrics."""
        clock.resume()  # the time the answer took to send is no stage's
        try:
            raw = lookup.raw_record
            schema = lookup.feature_set.schema_of(raw) if lookup.feature_set and raw else None
            entry = stored_record(
                response, decision, lookup.record, request.customer_id, pseudonym, held,
                raw_features=raw, schema=schema,
            )  # fmt: skip
            runtime.audit.submit(request_id, entry, schema if PACKED in entry else None)
        except Exception:  # the answer is out: make the gap loud (log + the audit alert)
            log.exception("decision not recorded", extra=fields(request_id=request_id))
            runtime.metrics.observe_audit("failed", 1)
        clock.lap("recording")
        runtime.metrics.observe_recorded(decision, response["variant"], clock.seconds)

    return Answer(response, record)


def _decode_scores(
    score_set: ScoreSetInfo | None, raw: bytes | None, request_id: str
) -> PrecomputedScores | None:
    """The customer's precomputed scores, or None (none stored, or unreadable: then the
    request is scored online, and an unreadable value is logged)."""
    if score_set is None or raw is None:
        return None
    try:
        return score_set.decode(raw)
    except ScoresDecodeError as exc:
        log.error(
            "undecodable precomputed scores",
            extra=fields(request_id=request_id, score_set=score_set.version, error=str(exc)),
        )
        return None


@dataclass(frozen=True, slots=True)
class Answer:
    """One decision: the response to send, then ``record`` to await once it is sent.

    Recording (building the audit record, queueing it, counting the decision) is work the
    customer need not wait for: the route hands ``record`` to the response as a background
    task, which Starlette runs on the same event loop right after the body is written.
    It is queued before the worker reads its next request on that connection, and the
    trade is the write-behind's own (``service.infra.audit_writer``): a worker killed in
    between loses it. A record that cannot be built or queued is logged with its request id
    and counted as ``nbo_audit_records_total{outcome="failed"}``, which the audit alert
    watches: a recording failure never costs the customer the offers already sent.
    """

    response: ResponseBody
    record: Callable[[], Awaitable[None]]


def decide(
    lookup: FeatureLookup,
    *,
    catalogue: Catalogue,
    recommender: RecommenderScorer | None,
    churn_model: ChurnScorer | None,
    k: int,
    now: datetime,
    settings: Settings,
    channel: str,
    decisioning: DecisioningConfig,
    clock: StageClock | None = None,
    maturity_model: MaturityScorer | None = None,
    response_model: ResponseScorer | None = None,
    precomputed: PrecomputedScores | None = None,
) -> Decision:
    """Score, assess churn risk, filter, arbitrate and explain: the pure part of the path.

    ``now`` is the decision time, not the feature set's ``as_of``: an assessment that
    expired since the features were materialized counts as expired. Every filter only
    removes candidates, and arbitration only orders what is left, so nothing the hard
    suitability and eligibility filter excluded can come back - on the fallback path too.

    Treatments (``service.decision.moments``) are candidates only when a trigger fired
    (churn risk, a maturing contract with ``maturity_model``, the upgrade journey, a date
    rule, the lifecycle stage) and pass the same filters; the customer's tier sets the
    channels and caps of the contact policy.

    With ``response_model``, every candidate left after the filters gets P(accept) on
    ``channel`` and the customer's channel affinity (``service.decision.acceptance``) as
    arbitration factors; the preferred channel is derived with or without it.

    ``precomputed``: the customer's stored scores, top reasons and churn risk, computed
    ahead by ``recommender`` and ``churn_model`` from the same record
    (``service.decision.precomputed``); they replace the online scoring and give the same
    decision. Only the scoring is skipped: every filter runs as on the online path.

    ``clock`` (optional) gets a lap per stage: ``scoring`` (model scores, churn risk, the
    moments, P(accept) and the shown offers' model reasons), ``filtering`` and
    ``arbitration``.
    """
    clock = clock or StageClock()
    record = lookup.record
    degraded = lookup.problem or (DegradedReason.NO_MODEL if recommender is None else None)
    facts = customer_facts(record) if record is not None else CustomerFacts()

    # Score: the model's propensities (the record prepared once: its scores now, the shown
    # offers' reasons later from the same work), or the fallback's popularity order.
    fallback = fallback_order(catalogue, recommender) if degraded is not None else None
    prepared: PreparedRecord | None = None
    source: str | None = None
    if fallback is not None:
        scores = fallback.scores
    else:
        assert recommender is not None and record is not None
        if precomputed is not None:
            prepared = PrecomputedRecord(precomputed, recommender, record)
            source = PRECOMPUTED
        else:
            prepared = recommender.prepare(record)
            source = ONLINE
        scores = model_scores(recommender, prepared)

    # Churn risk: needs the record and a churn model. Moments: the treatments the churn
    # risk, maturing contracts, the upgrade journey, date rules and the lifecycle stage
    # trigger, and the stage's levers; the tier picks the contact limits.
    if (
        source == PRECOMPUTED
        and churn_model is not None
        and precomputed is not None
        and precomputed.churn_probability is not None
    ):
        churn = precomputed_churn(
            precomputed, settings.churn_medium_threshold, settings.churn_high_threshold
        )
    else:
        churn = assess_churn_risk(
            churn_model,
            record,
            settings.churn_medium_threshold,
            settings.churn_high_threshold,
        )
    today = now.date()
    moments = customer_moments(record, catalogue, decisioning, churn, maturity_model, today)
    limits = ContactLimits.for_request(settings, decisioning.moments, moments.tier)
    clock.lap("scoring")
    candidates, not_candidates = offer_candidates(catalogue, moments)

    # Filter: the fallback is R1 only; then suitability and eligibility as of today (the
    # hard rule), then the channel rules and the contact policy.
    capped: list[Exclusion] = []
    if fallback is not None:
        candidates, capped = lowest_risk_only(candidates)
    allowed, excluded = split_suitable(
        candidates, facts, today, settings.risk_assessment_validity_days, catalogue
    )
    allowed, off_channel = split_by_channel(allowed, channel, decisioning)
    allowed, off_tier = split_by_tier_channel(allowed, decisioning.moments, moments.tier, channel)
    allowed, contacted = split_by_contact_policy(allowed, lookup.contact, now, limits)
    clock.lap("filtering")
    # Will they take it now, here? All candidates in one batch of the response model.
    acceptance = assess_acceptance(
        response_model, record, allowed, channel, lookup.contact.entries, now
    )
    clock.lap("scoring")

    # Arbitrate, keep the top k the channel's daily cap allows, and say why each is there.
    priorities = arbitrate(allowed, scores, moments, channel, decisioning, acceptance)
    unscored = unscored_products(allowed, priorities)
    capacity = daily_capacity(lookup.contact, channel, now, limits)
    shown, cut = top_offers(priorities, k, capacity, channel, limits.channel_daily_cap)
    clock.lap("arbitration")
    # The model's reasons of every shown model offer, from the prepared record.
    explained = [item.product for item in shown if not item.product.retention]
    model_explained = (  # by product id: hashing a (pydantic) Product hashes every field
        dict(
            zip(
                [p.id for p in explained],
                model_reasons(recommender, prepared, explained),
                strict=True,
            )
        )
        if recommender is not None and prepared is not None
        else {}
    )
    offers = []
    for position, item in enumerate(shown, start=1):
        product = item.product
        treatment = moments.treatments.get(product.id) if product.retention else None
        if product.retention:
            reasons: list[Reason] = []
            score = None
        elif fallback is not None:
            reasons = [fallback.reason]
            score = item.propensity if fallback.shown_score else None
        else:
            reasons = list(model_explained[product.id])
            score = item.propensity
        reasons += arbitration_reasons(item, treatment, channel)
        contract = treatment.contract if treatment is not None else None
        offers.append(  # tuple.__new__: the named tuple's own __new__ only forwards to it
            _new_tuple(
                Offer, (product, position, score, reasons, item.priority, item.trigger, contract)
            )
        )
    clock.lap("scoring")

    return Decision.of(
        offers=offers,
        churn_risk=churn,
        exclusions=not_candidates
        + capped
        + excluded
        + off_channel
        + off_tier
        + contacted
        + unscored
        + cut,
        degraded_reason=degraded,
        feature_set=lookup.feature_set,
        # The model's scores are a dict of this call's own (model_scores), read-only so far.
        scores=scores if fallback is None else dict(scores) if fallback.shown_score else {},
        priorities=priorities,
        retention_eligible=churn_triggered(churn, decisioning),
        contact={**lookup.contact.summary(now, limits, channel), "daily_capacity": capacity},
        decided_at=now,
        moments=moments,
        acceptance=acceptance,
        scores_source=source,
    )


def unscored_products(
    allowed: Sequence[Product], priorities: Sequence[Priority]
) -> list[Exclusion]:
    """The allowed products arbitration could not place (no finite propensity): recorded,
    so that the audit trail accounts for every product of the catalogue."""
    if len(priorities) == len(allowed):  # arbitration places each allowed product once at most
        return []
    placed = {item.product.id for item in priorities}
    return [
        Exclusion(p.id, Rule.NO_SCORE, "no finite propensity (or P(accept)) from the model")
        for p in allowed
        if p.id not in placed
    ]


def model_scores(scorer: RecommenderScorer, prepared: PreparedRecord) -> dict[str, float]:
    """Product id -> propensity; refuses an output that does not match ``product_ids``."""
    values = prepared.scores
    if len(values) != len(scorer.product_ids):
        raise ValueError(
            f"recommender returned {len(values)} scores for {len(scorer.product_ids)} products"
        )
    # ``tolist`` turns a numpy array into Python floats in one C call.
    floats = values.tolist() if isinstance(values, np.ndarray) else [float(v) for v in values]
    return dict(zip(scorer.product_ids, floats, strict=True))


def model_reasons(
    scorer: RecommenderScorer, prepared: PreparedRecord, products: Sequence[Product]
) -> list[list[Reason]]:
    """Each product's model reasons, in order, from the record ``scorer`` prepared."""
    return prepared.reasons([scorer.product_ids.index(p.id) for p in products])


def respond(
    request: RecommendationRequest,
    request_id: str,
    decision: Decision,
    model_versions: dict[str, str],
) -> ResponseBody:
    """The HTTP body of a decision, as plain JSON types.

    Why a dict and not the ``RecommendationResponse`` model: building the nested pydantic
    models (with their validation) and dumping them cost more CPU per request than the
    whole arbitration. The schema stays the contract: ``RecommendationResponse`` documents
    the route in OpenAPI, and the tests validate the bodies this function builds against
    it (``tests/service/decision/test_suitability_property.py`` for random decisions).
    """
    churn = decision.churn_risk
    feature_set = decision.feature_set
    preferred = decision.acceptance.preferred
    degraded = decision.degraded_reason
    return {
        "request_id": request_id,
        "customer_id": request.customer_id,
        "channel": request.channel,
        "offers": [
            {
                "product_id": offer.product.id,
                "name": offer.product.name,
                "rank": offer.rank,
                "score": offer.score,
                "priority": offer.priority,
                "reasons": reasons_body(offer.reasons),
                "trigger": offer.trigger,
                "contract": offer.contract,
            }
            for offer in decision.offers
        ],
        "churn_risk": (
            {
                "probability": churn.probability,
                "band": churn.band.value,
                "reasons": reasons_body(churn.reasons),
            }
            if churn is not None
            else None
        ),
        "model_versions": model_versions,
        "feature_set": (
            {"version": feature_set.version, "as_of": feature_set.as_of.isoformat()}
            if feature_set is not None
            else None
        ),
        "lifecycle_stage": decision.moments.stage,
        "tier": decision.moments.tier,
        "degraded": degraded is not None,
        "degraded_reason": degraded.value if degraded is not None else None,
        "variant": "champion",
        "withheld_reason": None,
        "preferred_channel": (
            {
                "channel": preferred.channel,
                "source": preferred.source,
                "accept_rate": preferred.accept_rate,
            }
            if preferred is not None
            else None
        ),
    }


def reasons_body(reasons: Sequence[Reason]) -> list[dict[str, str]]:
    return [{"code": r.code, "text": r.text} for r in reasons]
