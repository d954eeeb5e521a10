"""Property: a decision accounts for every product of the catalogue, each exactly once -
offered, excluded with the rule an independent oracle gives, or ranked out below the top k.

Drives the real decision function (``service.decision.recommend.decide``) with catalogues,
records, scores, churn risk, channel, contact history and daily cap chosen by hypothesis.
The oracle below re-reads the raw inputs itself (not ``core.suitability``), applies the
documented precedence (not due -> fallback R1 cap -> withdrawn -> held -> suitability ->
age -> residency -> income -> assets -> channel rule -> contact policy -> no score), then
ranks what is left by propensity x business value x retention boost (this configuration
has no channel weights or levers): the first min(k, daily capacity) are offered, the rest
of the top k are cut by the daily cap (contact policy), the others are ranked out.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.catalogue import Catalogue, Eligibility, Product
from core.decisioning import ChannelRule, DecisioningConfig, RetentionConfig
from core.settings import Settings
from features.online_store import FeatureSetInfo
from service.decision.audit_record import audit_record
from service.decision.contact_policy import ContactEntry, ContactState
from service.decision.outcome import DegradedReason
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup
from tests.support.decision_cases import (
    TODAY,
    ChosenChurn,
    ChosenScores,
    eligibility,
    records,
    scorers,
)

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
VALIDITY_DAYS = 730
SUPPRESSION_DAYS = 30
THRESHOLD, BOOST = 0.5, 10.0
RULE = ChannelRule(
    name="complex_advisor_only", categories=("investment",), min_risk_level=4, channels=("advisor",)
)
DECISIONING = DecisioningConfig(
    version="t",
    retention=RetentionConfig(churn_threshold=THRESHOLD, boost=BOOST),
    channel_rules=(RULE,),
)
FEATURE_SET = FeatureSetInfo(
    "v1", TODAY - timedelta(days=20), datetime(2026, 11, 5, tzinfo=UTC), 1, [], "t"
)
MODES = ["personal", "no_model", "unknown_customer", "store_unavailable"]


@st.composite
def catalogues(draw: st.DrawFn) -> Catalogue:
    products = []
    for i in range(draw(st.integers(1, 12))):
        retention = draw(st.booleans())
        products.append(
            Product(
                id=f"p{i}",
                name=f"product {i}",
                category="retention"
                if retention
                else draw(st.sampled_from(["investment", "card"])),
                risk_level=draw(st.integers(1, 5)),
                eligibility=draw(st.just(Eligibility()) | eligibility()),
                retention=retention,
                business_value=draw(st.floats(0.1, 10)),
                status=draw(st.sampled_from(["active", "active", "withdrawn"])),
            )
        )
    return Catalogue(version="t", products=tuple(products))


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    catalogue = draw(catalogues())
    ids = catalogue.ids
    return {
        "catalogue": catalogue,
        "record": draw(records(ids)),
        "scorer": draw(scorers(catalogue)),
        "churn": draw(st.none() | st.builds(ChosenChurn, st.floats(0, 1))),
        "mode": draw(st.sampled_from(MODES)),
        "k": draw(st.integers(1, 20)),
        "channel": draw(st.sampled_from(["app", "advisor"])),
        "declined": draw(st.lists(st.sampled_from(ids), unique=True)),
        "declined_days_ago": draw(st.integers(0, 60)),
        "daily_cap": draw(st.integers(1, 6)),
        "shown_today": draw(st.integers(0, 7)),
    }


# -- the oracle ---------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def filter_rule(
    product: Product, raw: dict[str, Any], case: dict[str, Any], fallback: bool, due: bool
) -> str | None:
    """The rule that removes ``product`` before ranking, read off the raw inputs."""
    if product.retention and not due:
        return "not_triggered"
    if fallback and product.risk_level > 1:
        return "suitability"
    if product.status != "active":
        return "withdrawn"
    if product.id in (raw.get("held") or []):
        return "held"
    level, assessed, allowed = _number(raw.get("risk_level")), raw.get("risk_assessed_on"), 1
    if level is not None and level.is_integer() and 1 <= level <= 5 and isinstance(assessed, str):
        days = (TODAY - date.fromisoformat(assessed)).days if assessed != "not a date" else -1
        if 0 <= days <= VALIDITY_DAYS:
            allowed = int(level)
    if product.risk_level > allowed:
        return "suitability"
    rules, age = product.eligibility, _number(raw.get("age"))
    if rules.min_age is not None or rules.max_age is not None:
        if age is None or not age.is_integer():
            return "eligibility_age"
        if (rules.min_age is not None and age < rules.min_age) or (
            rules.max_age is not None and age > rules.max_age
        ):
            return "eligibility_age"
    if rules.residents_only and raw.get("resident") is not True:
        return "eligibility_residency"
    income, assets = _number(raw.get("income")), _number(raw.get("balance"))
    if rules.min_income is not None and (income is None or income < rules.min_income):
        return "eligibility_income"
    if rules.min_assets is not None and (assets is None or assets < rules.min_assets):
        return "eligibility_assets"
    if (
        product.category == "investment"
        and product.risk_level >= 4
        and case["channel"] != "advisor"
    ):
        return "channel"
    if product.id in case["declined"] and case["declined_days_ago"] < SUPPRESSION_DAYS:
        return "contact_policy"
    return None


def oracle(case: dict[str, Any], record: dict[str, Any] | None, fallback: bool) -> dict[str, str]:
    """Product id -> ``offered``, ``ranked_out`` or the exclusion rule."""
    catalogue: Catalogue = case["catalogue"]
    scorer: ChosenScores = case["scorer"]
    churn = case["churn"]
    due = record is not None and churn is not None and churn.probability >= THRESHOLD
    if fallback:  # popularity of the products the model knows (0 otherwise), or neutral 1
        known = dict(zip(scorer.product_ids, map(float, scorer.popularity), strict=True))
        no_model = case["mode"] == "no_model"
        propensity = {p.id: 1.0 if no_model else known.get(p.id, 0.0) for p in catalogue.products}
    else:
        propensity = dict(zip(scorer.product_ids, scorer.values, strict=True))
    outcome: dict[str, str] = {}
    ranked: list[tuple[float, int, str]] = []
    order = [p for p in catalogue.products if p.retention] + catalogue.holdable  # candidates
    for position, product in enumerate(order):
        rule = filter_rule(product, record or {}, case, fallback, due)
        if rule is None and not product.retention:
            value = propensity.get(product.id, math.nan)
            if not math.isfinite(value):
                rule = "no_score"
        if rule is not None:
            outcome[product.id] = rule
            continue
        if product.retention:
            priority = churn.probability * product.business_value * 1.0 * 1.0 * BOOST
        else:
            priority = propensity[product.id] * product.business_value * 1.0 * 1.0 * 1.0
        ranked.append((-priority, position, product.id))
    ranked.sort()
    shown = min(case["k"], max(0, case["daily_cap"] - case["shown_today"]))
    for place, (_, _, pid) in enumerate(ranked):
        if place < shown:
            outcome[pid] = "offered"
        elif place < case["k"]:
            outcome[pid] = "contact_policy"  # the daily cap cut it from the top k
        else:
            outcome[pid] = "ranked_out"
    return outcome


# -- the property -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_every_product_is_offered_excluded_with_its_rule_or_ranked_out(
    case: dict[str, Any],
) -> None:
    catalogue: Catalogue = case["catalogue"]
    mode: str = case["mode"]
    record = case["record"] if mode in ("personal", "no_model") else None
    problem = {
        "unknown_customer": DegradedReason.UNKNOWN_CUSTOMER,
        "store_unavailable": DegradedReason.FEATURE_STORE_UNAVAILABLE,
    }.get(mode)
    now = NOW.timestamp()
    contact = ContactState(
        tuple(
            ContactEntry("declined", pid, "app", now - case["declined_days_ago"] * 86400)
            for pid in case["declined"]
        )
        + tuple(
            ContactEntry("shown", "elsewhere", case["channel"], now - 60 * (n + 1))
            for n in range(case["shown_today"])
        )
    )
    settings_ = Settings(
        risk_assessment_validity_days=VALIDITY_DAYS,
        decline_suppression_days=SUPPRESSION_DAYS,
        channel_daily_cap=case["daily_cap"],
        contact_max_impressions=3,
    )
    decision = decide(
        FeatureLookup(record, FEATURE_SET, problem, contact),
        catalogue=catalogue,
        recommender=None if mode == "no_model" else case["scorer"],
        churn_model=case["churn"],
        k=case["k"],
        now=NOW,
        settings=settings_,
        channel=case["channel"],
        decisioning=DECISIONING,
    )
    seen: dict[str, list[str]] = {p.id: [] for p in catalogue.products}
    for offer in decision.offers:
        seen[offer.product.id].append("offered")
    for exclusion in decision.exclusions:
        seen[exclusion.product_id].append(exclusion.rule.value)
    for pid in decision.ranked_out:
        seen[pid].append("ranked_out")
    assert all(len(outcomes) == 1 for outcomes in seen.values()), seen  # each exactly once
    expected = oracle(case, record, fallback=mode != "personal")
    assert {pid: outcomes[0] for pid, outcomes in seen.items()} == expected

    # The audit record carries the same accounting.
    body = respond_for(case, decision)
    entry = audit_record(body, decision, record, "c1", "pseudonym")
    recorded = {o["product_id"]: "offered" for o in entry["offers"]}
    recorded.update({e["product_id"]: e["rule"] for e in entry["exclusions"]})
    recorded.update(dict.fromkeys(entry["ranked_out"], "ranked_out"))
    assert recorded == expected


def respond_for(case: dict[str, Any], decision: Any) -> Any:
    from service.api.schemas import RecommendationRequest

    request = RecommendationRequest(customer_id="c1", channel=case["channel"], k=case["k"])
    return respond(request, "r", decision, {})
