"""Unit tests of ``core.suitability``: the hard filter between a model and a customer."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from core.catalogue import Eligibility, Product
from core.suitability import (
    CustomerFacts,
    Exclusion,
    Rule,
    assessment_valid,
    effective_risk_level,
    exclusion,
    partition,
    split_suitable,
)

TODAY = date(2026, 11, 15)
VALIDITY = 730
FRESH = TODAY - timedelta(days=30)


def product(pid: str = "p_x", risk: int = 1, **kwargs: Any) -> Product:
    rules = kwargs.pop("eligibility", {})
    return Product(
        id=pid,
        name=pid,
        category="investment",
        risk_level=risk,
        business_value=1.0,
        eligibility=Eligibility(**rules),
        **kwargs,
    )


def facts(**kwargs: Any) -> CustomerFacts:
    """An adult resident with income, assets and a fresh C5 assessment, unless overridden."""
    values: dict[str, Any] = {
        "age": 40,
        "risk_level": 5,
        "risk_assessed_on": FRESH,
        "resident": True,
        "income": 50_000.0,
        "assets": 100_000.0,
    }
    values.update(kwargs)
    return CustomerFacts(**values)


def rule_for(p: Product, f: CustomerFacts) -> Rule | None:
    found = exclusion(p, f, TODAY, VALIDITY)
    return found.rule if found is not None else None


# -- C levels vs R levels -----------------------------------------------------------------

ALLOWED = {1: {1}, 2: {1, 2}, 3: {1, 2, 3}, 4: {1, 2, 3, 4}, 5: {1, 2, 3, 4, 5}}
"""C1 -> R1; C2 -> R1-R2; C3 -> R1-R3; C4 -> R1-R4; C5 -> all (the investor-suitability table)."""


@pytest.mark.parametrize("investor", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("product_risk", [1, 2, 3, 4, 5])
def test_investor_level_table(investor: int, product_risk: int) -> None:
    verdict = rule_for(product(risk=product_risk), facts(risk_level=investor))
    if product_risk in ALLOWED[investor]:
        assert verdict is None
    else:
        assert verdict is Rule.SUITABILITY


def test_suitability_detail_names_both_levels() -> None:
    found = exclusion(product(risk=4), facts(risk_level=2), TODAY, VALIDITY)
    assert found is not None
    assert found.detail == "R4 above C2"


# -- assessment validity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "assessed_on", "why"),
    [
        (None, FRESH, "no risk level"),
        (5, None, "no assessment date"),
        (5, TODAY - timedelta(days=VALIDITY + 1), "expired by one day"),
        (5, TODAY + timedelta(days=1), "dated in the future"),
        (0, FRESH, "level out of range"),
        (6, FRESH, "level out of range"),
    ],
)
def test_without_a_valid_assessment_only_r1(
    level: int | None, assessed_on: date | None, why: str
) -> None:
    f = facts(risk_level=level, risk_assessed_on=assessed_on)
    assert not assessment_valid(f, TODAY, VALIDITY), why
    assert effective_risk_level(f, TODAY, VALIDITY) == 1
    assert rule_for(product(risk=1), f) is None
    for risk in (2, 3, 4, 5):
        assert rule_for(product(risk=risk), f) is Rule.SUITABILITY
    found = exclusion(product(risk=2), f, TODAY, VALIDITY)
    assert found is not None and "no valid assessment" in found.detail


@pytest.mark.parametrize("age_days", [0, VALIDITY])
def test_assessment_valid_on_both_edges(age_days: int) -> None:
    f = facts(risk_assessed_on=TODAY - timedelta(days=age_days))
    assert assessment_valid(f, TODAY, VALIDITY)
    assert effective_risk_level(f, TODAY, VALIDITY) == 5


def test_validity_is_judged_on_the_decision_date() -> None:
    f = facts(risk_assessed_on=TODAY - timedelta(days=VALIDITY))
    assert effective_risk_level(f, TODAY, VALIDITY) == 5
    assert effective_risk_level(f, TODAY + timedelta(days=1), VALIDITY) == 1


# -- eligibility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "customer", "expected"),
    [
        ({"min_age": 18}, {"age": 17}, Rule.AGE),
        ({"min_age": 18}, {"age": 18}, None),
        ({"max_age": 17}, {"age": 18}, Rule.AGE),
        ({"max_age": 17}, {"age": 17}, None),
        ({"min_age": 18}, {"age": None}, Rule.AGE),
        ({"max_age": 17}, {"age": None}, Rule.AGE),
        ({"residents_only": True}, {"resident": False}, Rule.RESIDENCY),
        ({"residents_only": True}, {"resident": None}, Rule.RESIDENCY),
        ({"residents_only": True}, {"resident": True}, None),
        ({"min_income": 20_000}, {"income": 19_999.0}, Rule.INCOME),
        ({"min_income": 20_000}, {"income": None}, Rule.INCOME),
        ({"min_income": 20_000}, {"income": 20_000.0}, None),
        ({"min_assets": 50_000}, {"assets": 49_999.0}, Rule.ASSETS),
        ({"min_assets": 50_000}, {"assets": None}, Rule.ASSETS),
        ({"min_assets": 50_000}, {"assets": 50_000.0}, None),
        ({}, {"age": None, "resident": None, "income": None, "assets": None}, None),
    ],
)
def test_eligibility_rules_and_unknown_facts(
    rules: dict[str, Any], customer: dict[str, Any], expected: Rule | None
) -> None:
    assert rule_for(product(eligibility=rules), facts(**customer)) is expected


def test_withdrawn_is_never_offered() -> None:
    assert rule_for(product(status="withdrawn"), facts()) is Rule.WITHDRAWN


def test_held_is_never_offered() -> None:
    assert rule_for(product("p_held"), facts(held=frozenset({"p_held"}))) is Rule.HELD
    assert rule_for(product("p_other"), facts(held=frozenset({"p_held"}))) is None


def test_a_completely_unknown_customer_gets_only_unrestricted_r1() -> None:
    unknown = CustomerFacts()
    catalogue = [
        product("p_plain"),
        product("p_risky", risk=2),
        product("p_adult", eligibility={"min_age": 18}),
        product("p_local", eligibility={"residents_only": True}),
        product("p_earner", eligibility={"min_income": 1}),
        product("p_saver", eligibility={"min_assets": 1}),
    ]
    allowed, excluded = split_suitable(catalogue, unknown, TODAY, VALIDITY)
    assert [p.id for p in allowed] == ["p_plain"]
    assert [(e.product_id, e.rule) for e in excluded] == [
        ("p_risky", Rule.SUITABILITY),
        ("p_adult", Rule.AGE),
        ("p_local", Rule.RESIDENCY),
        ("p_earner", Rule.INCOME),
        ("p_saver", Rule.ASSETS),
    ]


def test_split_keeps_order_and_records_one_rule_per_exclusion() -> None:
    catalogue = [
        product("p_a"),
        product("p_b", status="withdrawn"),
        product("p_c", risk=3),
        product("p_d"),
    ]
    allowed, excluded = split_suitable(catalogue, facts(risk_level=2), TODAY, VALIDITY)
    assert [p.id for p in allowed] == ["p_a", "p_d"]
    assert [(e.product_id, e.rule) for e in excluded] == [
        ("p_b", Rule.WITHDRAWN),
        ("p_c", Rule.SUITABILITY),
    ]


def test_partition_only_removes_and_keeps_the_order() -> None:
    """The one loop every request-path filter runs: nothing added back, nothing reordered."""
    products = [product(f"p_{i}", risk=1 + i % 5) for i in range(10)]

    def risky(p: Product) -> Exclusion | None:
        return Exclusion(p.id, Rule.SUITABILITY, "too risky") if p.risk_level > 2 else None

    kept, excluded = partition(iter(products), risky)  # any iterable, consumed once
    assert [p.id for p in kept] == [p.id for p in products if p.risk_level <= 2]
    assert [e.product_id for e in excluded] == [p.id for p in products if p.risk_level > 2]
    assert {e.rule for e in excluded} == {Rule.SUITABILITY}
    assert partition([], risky) == ([], [])
