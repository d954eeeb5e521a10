"""The catalogue's suitability index (``core.suitability.SuitabilityIndex``) gives exactly
the verdicts of ``exclusion`` itself: for many customers against one catalogue (so most of
them read verdicts another customer's facts filled in), for a product of another catalogue,
and after a reload (a new catalogue object) or a new day (an assessment that expired)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.catalogue import Catalogue, Eligibility, Product
from core.customer_facts import customer_facts
from core.suitability import CustomerFacts, Rule, split_suitable, suitability_index
from tests.support.decision_cases import eligibility, records

TODAY = date(2026, 11, 15)
VALIDITY = 730


@st.composite
def catalogues(draw: st.DrawFn) -> Catalogue:
    count = draw(st.integers(1, 14))
    return Catalogue(
        version="t",
        products=tuple(
            Product(
                id=f"p{i}",
                name=f"product {i}",
                category=draw(st.sampled_from(["account", "investment", "lending", "pension"])),
                risk_level=draw(st.integers(1, 5)),
                eligibility=draw(st.just(Eligibility()) | eligibility()),
                business_value=1.0,
                status=draw(st.sampled_from(["active", "active", "withdrawn"])),
            )
            for i in range(count)
        ),
    )


def uncached(products: Any, facts: CustomerFacts, today: date) -> tuple[list[Any], list[Any]]:
    """The reference: :func:`exclusion` product by product (no catalogue given)."""
    return split_suitable(products, facts, today, VALIDITY)


@st.composite
def edge_facts(draw: st.DrawFn, catalogue: Catalogue) -> CustomerFacts:
    """Facts on and beside the catalogue's own thresholds (where a comparison flips)."""
    rules = [p.eligibility for p in catalogue.products]
    ages = {a for r in rules for a in (r.min_age, r.max_age) if a is not None}
    amounts = {a for r in rules for a in (r.min_income, r.min_assets) if a is not None}

    def near(values: set[Any], step: float) -> st.SearchStrategy[Any]:
        return st.sampled_from(sorted({v + d for v in values or {0} for d in (-step, 0, step)}))

    return CustomerFacts(
        age=draw(st.none() | near(ages, 1).map(int)),
        risk_level=draw(st.none() | st.integers(1, 5)),
        risk_assessed_on=draw(st.none() | st.sampled_from([TODAY, TODAY - timedelta(VALIDITY)])),
        resident=draw(st.none() | st.booleans()),
        income=draw(st.none() | near(amounts, 0.5)),
        assets=draw(st.none() | near(amounts, 0.5)),
        held=frozenset(draw(st.lists(st.sampled_from([p.id for p in catalogue.products])))),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_indexed_split_equals_the_product_by_product_one(data: st.DataObject) -> None:
    catalogue = data.draw(catalogues())
    ids = [p.id for p in catalogue.products]
    customers = data.draw(
        st.lists(records(ids).map(customer_facts) | edge_facts(catalogue), min_size=1, max_size=25)
    )
    for facts in customers:
        day = data.draw(st.sampled_from([TODAY, TODAY + timedelta(days=400)]))
        # A subset of the catalogue, in its order (as the candidates are), every time.
        subset = [p for p in catalogue.products if data.draw(st.booleans())]
        for products in (list(catalogue.products), subset):
            indexed = split_suitable(products, facts, day, VALIDITY, catalogue)
            assert indexed == uncached(products, facts, day)


def test_a_product_of_another_catalogue_is_judged_on_its_own() -> None:
    mine = Product(id="p_x", name="x", category="account", risk_level=1, business_value=1.0)
    ours = Catalogue(version="a", products=(mine,))
    theirs = Product(id="p_x", name="x", category="investment", risk_level=5, business_value=1.0)
    facts = CustomerFacts(risk_level=2, risk_assessed_on=TODAY)
    assert split_suitable([ours.products[0]], facts, TODAY, VALIDITY, ours) == (
        [ours.products[0]],
        [],
    )
    kept, excluded = split_suitable([theirs], facts, TODAY, VALIDITY, ours)
    assert kept == [] and [e.rule for e in excluded] == [Rule.SUITABILITY]


def test_a_reloaded_catalogue_gets_its_own_verdicts() -> None:
    """Same ids and version, new rules: the new object's index never reads the old one's."""

    def catalogue(min_age: int) -> Catalogue:
        rules = Eligibility(min_age=min_age)
        only = Product(
            id="p_a",
            name="a",
            category="account",
            risk_level=1,
            business_value=1,
            eligibility=rules,
        )
        return Catalogue(version="same", products=(only,))

    facts = CustomerFacts(age=20)
    before, after = catalogue(18), catalogue(21)
    assert split_suitable(before.products, facts, TODAY, VALIDITY, before)[0] == [
        before.products[0]
    ]
    kept, excluded = split_suitable(after.products, facts, TODAY, VALIDITY, after)
    assert kept == [] and excluded[0].detail == "under 21"
    assert suitability_index(after) is not suitability_index(before)


def test_an_assessment_that_expired_since_yesterday_no_longer_allows_its_level() -> None:
    product = Product(id="p_r3", name="r3", category="investment", risk_level=3, business_value=1)
    catalogue = Catalogue(version="t", products=(product,))
    assessed = TODAY - timedelta(days=VALIDITY)
    facts = CustomerFacts(risk_level=3, risk_assessed_on=assessed)
    assert split_suitable([product], facts, TODAY, VALIDITY, catalogue) == ([product], [])
    kept, excluded = split_suitable(
        [product], facts, TODAY + timedelta(days=1), VALIDITY, catalogue
    )
    assert kept == [] and excluded[0].detail == "R3 above no valid assessment"


@given(records([f"p{i}" for i in range(5)]))
def test_customer_facts_of_is_the_constructor(record: dict[str, Any]) -> None:
    facts = customer_facts(record)
    built = CustomerFacts(**{f.name: getattr(facts, f.name) for f in fields(CustomerFacts)})
    assert facts == built and repr(facts) == repr(built) and vars(facts) == vars(built)
    assert list(vars(facts)) == [f.name for f in fields(CustomerFacts)]
