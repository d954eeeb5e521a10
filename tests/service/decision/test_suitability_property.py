"""Property: whatever the catalogue, the customer record, its moments and the model scores,
the service never offers an unsuitable, ineligible, held or withdrawn product - nor does its
fallback - and offers a treatment only when one of its triggers holds.

Drives the real decision function (``service.decision.recommend.decide``) with a fake scorer that
returns scores chosen by hypothesis (NaN and infinities included), a fake maturity scorer, and
a moments config (maturity trigger, stage levers, tier service levels, upgrade journey, date
rules) drawn for the drawn catalogue. The oracles below re-read the raw record independently
of ``core.suitability``, ``core.customer_facts`` and ``service.decision.moments``.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings

from core.catalogue import Catalogue, Product
from core.decisioning import (
    STAGES,
    TIERS,
    DecisioningConfig,
    MomentsConfig,
    StageLevers,
    TierService,
)
from service.api.schemas import RecommendationRequest, RecommendationResponse
from service.decision.outcome import DegradedReason
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup
from tests.support.decision_cases import ChosenScores
from tests.support.decision_strategies import (
    FEATURE_SET,
    NOW,
    RETENTION,
    SETTINGS,
    TODAY,
    situations,
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def may_offer(product: Product, record: dict[str, Any] | None, *, fallback: bool) -> bool:
    """The domain rules, read straight off the raw record (``None`` = nothing known)."""
    raw = record or {}
    if product.status != "active" or product.id in (raw.get("held") or []):
        return False
    level = _number(raw.get("risk_level"))
    assessed = raw.get("risk_assessed_on")
    allowed = 1
    if level is not None and level.is_integer() and 1 <= level <= 5 and isinstance(assessed, str):
        days = (TODAY - date.fromisoformat(assessed)).days if assessed != "not a date" else -1
        if 0 <= days <= SETTINGS.risk_assessment_validity_days:
            allowed = int(level)
    if fallback:
        allowed = 1
    if product.risk_level > allowed:
        return False
    rules = product.eligibility
    age = _number(raw.get("age"))
    if rules.min_age is not None or rules.max_age is not None:
        if age is None or not age.is_integer():
            return False
        if rules.min_age is not None and age < rules.min_age:
            return False
        if rules.max_age is not None and age > rules.max_age:
            return False
    if rules.residents_only and raw.get("resident") is not True:
        return False
    income, assets = _number(raw.get("income")), _number(raw.get("balance"))
    if rules.min_income is not None and (income is None or income < rules.min_income):
        return False
    return not (rules.min_assets is not None and (assets is None or assets < rules.min_assets))


def _stage_levers(case: dict[str, Any], record: dict[str, Any] | None) -> StageLevers | None:
    stage = record.get("lifecycle_stage") if record is not None else None
    return case["moments"].stages.get(stage) if isinstance(stage, str) else None


def _in_window(anchor: int, month: int, before: int, after: int) -> bool:
    window = {(anchor - 1 + shift) % 12 + 1 for shift in range(-before, after + 1)}
    return month in window


def triggers(case: dict[str, Any], record: dict[str, Any] | None) -> dict[str, set[str]]:
    """Treatment id -> the triggers that hold for it, read straight off the raw record."""
    if record is None:
        return {}
    moments: MomentsConfig = case["moments"]
    catalogue: Catalogue = case["catalogue"]
    found: dict[str, set[str]] = {}
    levers = _stage_levers(case, record)
    for product_id in levers.treatments if levers is not None else ():
        found.setdefault(product_id, set()).add(f"stage:{record['lifecycle_stage']}")
    if levers is not None and levers.treatments_only:
        return found
    churn = case["churn"]
    if (churn is not None and churn.probability >= 0.5) or (levers and levers.retention_first):
        for product in catalogue.products:
            if product.retention and product.category == "retention":
                found.setdefault(product.id, set()).add("churn")
    trigger, outflow = moments.maturity, case["outflow"]
    contracts = record["maturities"] if isinstance(record["maturities"], list) else []
    if trigger is not None and outflow is not None:
        likely = outflow.probability >= trigger.outflow_threshold
        for contract in contracts:
            amount = _number(contract["amount"])
            try:
                days = (date.fromisoformat(contract["maturity_date"]) - TODAY).days
            except (TypeError, ValueError):
                continue
            due = 0 <= days <= trigger.lead_days and amount is not None and amount >= 0
            if likely and due and contract["product"] in trigger.contract_products:
                reached = [t for t in trigger.treatments if t.min_amount <= amount]
                product_id = max(reached, key=lambda t: t.min_amount).product
                found.setdefault(product_id, set()).add("maturity")
    growth = [_number(record[f"aum_growth_m{n}"]) for n in (1, 2, 3)]
    if moments.upgrade and record["upgrade_candidate"] is True and None not in growth:
        found.setdefault(moments.upgrade.product, set()).add("upgrade")
    month = _number(record["birth_month"])
    known = month is not None and month in range(1, 13)
    for rule in moments.date_rules:
        window = (rule.months_before, rule.months_after)
        if known and _in_window(int(month or 0), TODAY.month, *window):
            found.setdefault(rule.product, set()).add(f"date_rule:{rule.name}")
    return found


def cross_sell_allowed(case: dict[str, Any], record: dict[str, Any] | None, p: Product) -> bool:
    levers = _stage_levers(case, record)
    if levers is None:
        return True
    allowed = levers.categories is None or p.category in levers.categories
    return levers.cross_sell and not levers.treatments_only and allowed


def tier_service(case: dict[str, Any], record: dict[str, Any] | None) -> TierService | None:
    tier = record.get("tier") if record is not None else None
    return case["moments"].tiers.get(tier) if isinstance(tier, str) else None


# -- the property -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_offers_are_always_suitable_eligible_and_complete(case: dict[str, Any]) -> None:
    check_decision(case)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations(moments_first=True))
def test_treatments_only_when_triggered_and_always_suitable(case: dict[str, Any]) -> None:
    check_decision(case)


def check_decision(case: dict[str, Any]) -> None:
    """Decide ``case`` and check the answer against the oracles above."""
    catalogue: Catalogue = case["catalogue"]
    scorer: ChosenScores = case["scorer"]
    mode: str = case["mode"]
    record = case["record"] if mode in ("personal", "no_model") else None
    problem = {
        "unknown_customer": DegradedReason.UNKNOWN_CUSTOMER,
        "no_feature_set": DegradedReason.NO_FEATURE_SET,
        "store_unavailable": DegradedReason.FEATURE_STORE_UNAVAILABLE,
    }.get(mode)
    recommender = None if mode == "no_model" else scorer
    decision = decide(
        FeatureLookup(record, FEATURE_SET, problem),
        catalogue=catalogue,
        recommender=recommender,
        churn_model=case["churn"],
        k=case["k"],
        now=NOW,
        settings=SETTINGS,
        channel=case["channel"],  # no channel rule applies: suitability and moments remove
        decisioning=DecisioningConfig(version="t", retention=RETENTION, moments=case["moments"]),
        maturity_model=case["outflow"],
    )
    fallback = mode != "personal"
    triggered = triggers(case, record)

    offered = [offer.product for offer in decision.offers]
    for offer in decision.offers:
        product = offer.product
        assert may_offer(product, record, fallback=fallback), product
        event(f"offered trigger {str(offer.trigger).split(':')[0]}")
        if product.retention:  # a treatment: only when its trigger holds
            assert offer.trigger in triggered.get(product.id, set()), (product, offer.trigger)
        else:
            assert offer.trigger is None and cross_sell_allowed(case, record, product), product
        assert not fallback or product.risk_level == 1, product
    assert len({p.id for p in offered}) == len(offered)
    assert [offer.rank for offer in decision.offers] == list(range(1, len(offered) + 1))
    assert decision.degraded == fallback
    assert decision.degraded_reason == (problem or (DegradedReason.NO_MODEL if fallback else None))

    # Nothing suitable was dropped: exactly min(k, offerable-and-rankable) offers.
    if not fallback:
        scores = dict(zip(scorer.product_ids, scorer.values, strict=True))
        rankable = {pid for pid, s in scores.items() if math.isfinite(s)}
    else:
        rankable = {p.id for p in catalogue.products}  # popularity or business value
    offerable = [
        p
        for p in catalogue.products
        if may_offer(p, record, fallback=fallback)
        and (
            p.id in triggered
            if p.retention
            else p.id in rankable and cross_sell_allowed(case, record, p)
        )
    ]
    # The tier's service level: its channels only, its daily cap (else the settings').
    service = tier_service(case, record)
    cap = SETTINGS.channel_daily_cap
    if service is not None and service.channel_daily_cap is not None:
        cap = service.channel_daily_cap
    if service is not None and case["channel"] not in service.channels:
        cap = 0
    assert len(offered) == min(case["k"], len(offerable), cap)

    # Arbitration: offers in priority order; every cross-sell offer has a finite score.
    priorities = [o.priority for o in decision.offers]
    assert all(p is not None and math.isfinite(p) for p in priorities)
    assert priorities == sorted(priorities, reverse=True)  # type: ignore[type-var]
    scored = [o.score for o in decision.offers if not o.product.retention]
    assert all(s is None or math.isfinite(s) for s in scored)
    assert mode == "no_model" or all(s is not None for s in scored)

    # No product is both offered and excluded. (That every product is accounted for, each
    # exclusion with the rule an oracle gives: test_decision_accounting.py.)
    excluded = {e.product_id for e in decision.exclusions}
    assert not excluded & {p.id for p in offered}

    # The body as sent (orjson) is a valid RecommendationResponse: the schema is the
    # contract of the dict ``respond`` builds.
    sent = respond(
        RecommendationRequest(customer_id="c1", channel="app", k=case["k"]), "r", decision, {}
    )
    body = RecommendationResponse.model_validate_json(orjson.dumps(sent), strict=True)
    assert body.model_dump(mode="json") == orjson.loads(orjson.dumps(sent))
    assert [o.product_id for o in body.offers] == [p.id for p in offered]
    raw = record or {}
    known = {"lifecycle_stage": STAGES, "tier": TIERS}
    for name, values in known.items():
        value = raw.get(name)
        expected = value if isinstance(value, str) and value in values else None
        assert getattr(body, name) == expected, name
