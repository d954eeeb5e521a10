"""Property: whatever the catalogue, the customer record and the model scores, the service
never offers an unsuitable, ineligible, held or withdrawn product - nor does its fallback.

Drives the real decision function (``service.decision.recommend.decide``) with a fake scorer that
returns scores chosen by hypothesis (NaN and infinities included). The oracle below re-reads
the raw record independently of ``core.suitability`` and ``core.customer_facts``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.catalogue import Catalogue, Eligibility, Product
from core.decisioning import DecisioningConfig, RetentionConfig
from core.scoring.base import FeatureRecord, PreparedFromScores, Reason
from core.settings import Settings
from features.online_store import FeatureSetInfo
from service.api.schemas import RecommendationRequest
from service.decision.outcome import DegradedReason
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup

TODAY = date(2026, 11, 15)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SETTINGS = Settings(
    risk_assessment_validity_days=730, churn_medium_threshold=0.2, churn_high_threshold=0.5
)
DECISIONING = DecisioningConfig(
    version="t", retention=RetentionConfig(churn_threshold=0.5, boost=10)
)
FEATURE_SET = FeatureSetInfo(
    "v1", TODAY - timedelta(days=20), datetime(2026, 11, 5, tzinfo=UTC), 1, [], "t"
)


# -- fakes (pure logic only) --------------------------------------------------------------


@dataclass
class ChosenScores(PreparedFromScores):
    """A recommender returning the scores hypothesis chose."""

    product_ids: list[str]
    values: list[float]
    popularity: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    kind: str = "recommender"

    def score(self, record: FeatureRecord) -> np.ndarray:
        return np.array(self.values, dtype=np.float64)

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        return [Reason("chosen", f"score {self.values[product_index]}")]


@dataclass
class ChosenChurn:
    probability: float
    feature_names: list[str] = field(default_factory=list)
    kind: str = "churn"

    def predict_proba(self, record: FeatureRecord) -> float:
        return self.probability

    def reasons(self, record: FeatureRecord) -> list[Reason]:
        return []


# -- strategies ---------------------------------------------------------------------------


@st.composite
def eligibility(draw: st.DrawFn) -> Eligibility:
    min_age = draw(st.none() | st.integers(0, 90))
    max_age = draw(st.none() | st.integers(min_age or 0, 120))
    return Eligibility(
        min_age=min_age,
        max_age=max_age,
        residents_only=draw(st.booleans()),
        min_income=draw(st.none() | st.floats(0, 200_000)),
        min_assets=draw(st.none() | st.floats(0, 500_000)),
    )


@st.composite
def catalogues(draw: st.DrawFn) -> Catalogue:
    count = draw(st.integers(1, 12))
    products = [
        Product(
            id=f"p{i}",
            name=f"product {i}",
            category="investment",
            risk_level=draw(st.integers(1, 5)),
            eligibility=draw(st.just(Eligibility()) | eligibility()),
            retention=draw(st.booleans()),
            business_value=draw(st.floats(0.1, 10)),
            status=draw(st.sampled_from(["active", "active", "withdrawn"])),
        )
        for i in range(count)
    ]
    return Catalogue(version="t", products=tuple(products))


def garbage() -> st.SearchStrategy[Any]:
    """Values of the wrong type a broken record might hold."""
    return st.sampled_from(["", "yes", "3", True, [], {}])


@st.composite
def records(draw: st.DrawFn, product_ids: list[str]) -> dict[str, Any]:
    assessed = draw(st.none() | st.dates(TODAY - timedelta(days=1500), TODAY + timedelta(60)))
    return {
        "age": draw(st.none() | st.integers(0, 100) | st.floats(0, 100) | garbage()),
        "risk_level": draw(st.none() | st.integers(0, 6) | st.sampled_from([3.0, 2.5]) | garbage()),
        "risk_assessed_on": (
            assessed.isoformat() if assessed else draw(st.none() | st.just("not a date"))
        ),
        "resident": draw(st.none() | st.booleans() | garbage()),
        "income": draw(st.none() | st.floats(-1e6, 1e6) | garbage()),
        "balance": draw(st.none() | st.floats(-1e6, 1e7) | garbage()),
        "held": draw(st.lists(st.sampled_from([*product_ids, "not_in_catalogue"]), unique=True)),
    }


@st.composite
def scorers(draw: st.DrawFn, catalogue: Catalogue) -> ChosenScores:
    holdable = [p.id for p in catalogue.holdable]
    known = draw(st.permutations(holdable)) if holdable else []
    known = known[: draw(st.integers(0, len(known)))]
    values = draw(st.lists(st.floats(allow_nan=True), min_size=len(known), max_size=len(known)))
    popularity = draw(st.lists(st.floats(0, 1), min_size=len(known), max_size=len(known)))
    return ChosenScores(list(known), values, np.array(popularity))


MODES = ["personal", "no_model", "unknown_customer", "no_feature_set", "store_unavailable"]


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    catalogue = draw(catalogues())
    return {
        "catalogue": catalogue,
        "record": draw(records(catalogue.ids)),
        "scorer": draw(scorers(catalogue)),
        "churn": draw(st.none() | st.builds(ChosenChurn, st.floats(0, 1))),
        "mode": draw(st.sampled_from(MODES)),
        "k": draw(st.integers(1, 20)),
    }


# -- oracle -------------------------------------------------------------------------------


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


# -- the property -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_offers_are_always_suitable_eligible_and_complete(case: dict[str, Any]) -> None:
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
        channel="advisor",  # no channel rule applies there: only suitability removes
        decisioning=DECISIONING,
    )
    fallback = mode != "personal"
    churn_high = (
        record is not None and case["churn"] is not None and case["churn"].probability >= 0.5
    )

    offered = [offer.product for offer in decision.offers]
    for product in offered:
        assert may_offer(product, record, fallback=fallback), product
        assert not product.retention or churn_high, product
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
        and (churn_high if p.retention else p.id in rankable)
    ]
    assert len(offered) == min(case["k"], len(offerable))

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

    body = respond(
        RecommendationRequest(customer_id="c1", channel="app", k=case["k"]), "r", decision, {}
    )
    assert [o.product_id for o in body.offers] == [p.id for p in offered]
