"""Suitability and eligibility: a hard filter, never a score.

A product may be actively offered only if its risk level R does not exceed the
customer's investor level C (C1 -> R1 ... C5 -> R1-R5). A customer whose risk assessment
is missing, in the future relative to the decision date, or expired may be offered
only R1 products. Eligibility rules (age, residency, income, assets, held, withdrawn)
apply on top. Unknown facts never widen what is allowed: a product with an age limit is
excluded when the age is unknown, and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from core.catalogue import Product

LOWEST_RISK_LEVEL = 1


class Rule(StrEnum):
    """Why a product was excluded (recorded for audit and counted in metrics)."""

    WITHDRAWN = "withdrawn"
    HELD = "held"
    SUITABILITY = "suitability"
    AGE = "eligibility_age"
    RESIDENCY = "eligibility_residency"
    INCOME = "eligibility_income"
    ASSETS = "eligibility_assets"
    # Applied by the service's decision layer after this hard filter (they only remove):
    CHANNEL = "channel"  # a channel rule (e.g. complex products on the advisor desk only)
    CONTACT_POLICY = "contact_policy"  # impression cap, pause after a decline, daily cap
    # Not candidates of this decision at all (recorded so the audit accounts for every product):
    NOT_TRIGGERED = "not_triggered"  # a treatment no moment triggered (churn risk, maturity...)
    STAGE = "lifecycle_stage"  # a cross-sell product the customer's lifecycle stage does not allow
    NO_SCORE = "no_score"  # a cross-sell product the model gave no finite propensity


@dataclass(frozen=True)
class CustomerFacts:
    """What the filter needs to know about one customer (``None`` = unknown)."""

    age: int | None = None
    risk_level: int | None = None
    risk_assessed_on: date | None = None
    resident: bool | None = None
    income: float | None = None
    assets: float | None = None
    held: frozenset[str] = field(default_factory=frozenset)


class Exclusion(NamedTuple):
    """One product kept out of a decision, by which rule and why.

    A named tuple rather than a frozen dataclass: a request makes a couple of dozen, and a
    tuple is built about four times faster (a frozen dataclass sets each field through
    ``object.__setattr__``); it is as immutable.
    """

    product_id: str
    rule: Rule
    detail: str


def assessment_valid(facts: CustomerFacts, today: date, validity_days: int) -> bool:
    """True when the risk assessment exists, is not dated after ``today`` and is not expired."""
    if facts.risk_level is None or facts.risk_assessed_on is None:
        return False
    if not 1 <= facts.risk_level <= 5:
        return False
    age_days = (today - facts.risk_assessed_on).days
    return 0 <= age_days <= validity_days


def effective_risk_level(facts: CustomerFacts, today: date, validity_days: int) -> int:
    """The highest product risk level this customer may be offered today."""
    if assessment_valid(facts, today, validity_days):
        assert facts.risk_level is not None
        return facts.risk_level
    return LOWEST_RISK_LEVEL


def exclusion(
    product: Product,
    facts: CustomerFacts,
    today: date,
    validity_days: int,
    valid: bool | None = None,
) -> Exclusion | None:
    """The first rule that forbids offering ``product`` to this customer, or ``None``.

    ``valid``: ``assessment_valid(facts, today, validity_days)`` when the caller already
    knows it (:func:`split_suitable` works it out once for all products)."""
    pid = product.id
    if not product.active:
        return Exclusion(pid, Rule.WITHDRAWN, "product withdrawn from sale")
    if pid in facts.held:
        return Exclusion(pid, Rule.HELD, "customer already holds it")
    if valid is None:
        valid = assessment_valid(facts, today, validity_days)
    allowed = facts.risk_level if valid and facts.risk_level is not None else LOWEST_RISK_LEVEL
    if product.risk_level > allowed:
        why = f"C{facts.risk_level}" if valid else "no valid assessment"
        return Exclusion(pid, Rule.SUITABILITY, f"R{product.risk_level} above {why}")
    rules = product.eligibility
    if rules.min_age is not None or rules.max_age is not None:
        if facts.age is None:
            return Exclusion(pid, Rule.AGE, "age unknown")
        if rules.min_age is not None and facts.age < rules.min_age:
            return Exclusion(pid, Rule.AGE, f"under {rules.min_age}")
        if rules.max_age is not None and facts.age > rules.max_age:
            return Exclusion(pid, Rule.AGE, f"over {rules.max_age}")
    if rules.residents_only and facts.resident is not True:
        return Exclusion(pid, Rule.RESIDENCY, "residents only")
    if rules.min_income is not None and (facts.income is None or facts.income < rules.min_income):
        return Exclusion(pid, Rule.INCOME, f"income below {rules.min_income:g} or unknown")
    if rules.min_assets is not None and (facts.assets is None or facts.assets < rules.min_assets):
        return Exclusion(pid, Rule.ASSETS, f"assets below {rules.min_assets:g} or unknown")
    return None


def split_suitable(
    products: Iterable[Product], facts: CustomerFacts, today: date, validity_days: int
) -> tuple[list[Product], list[Exclusion]]:
    """Partition products into (offerable, exclusions-with-rule)."""
    valid = assessment_valid(facts, today, validity_days)
    return partition(
        products, lambda product: exclusion(product, facts, today, validity_days, valid)
    )


def partition(
    products: Iterable[Product], exclusion_of: Callable[[Product], Exclusion | None]
) -> tuple[list[Product], list[Exclusion]]:
    """Split ``products`` by one rule into (kept, in their order; exclusions).

    ``exclusion_of`` says why a product goes, or None to keep it. Every filter of the
    request path (suitability, the fallback's R1 cap, channel rules, the contact policy) is
    one of these, so a filter can only remove candidates - never add one back or reorder.
    """
    kept: list[Product] = []
    excluded: list[Exclusion] = []
    for product in products:
        reason = exclusion_of(product)
        if reason is None:
            kept.append(product)
        else:
            excluded.append(reason)
    return kept, excluded
