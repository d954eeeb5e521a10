"""Suitability and eligibility: a hard filter, never a score.

A product may be actively offered only if its risk level R does not exceed the
customer's investor level C (C1 -> R1 ... C5 -> R1-R5). A customer whose risk assessment
is missing, in the future relative to the decision date, or expired may be offered
only R1 products. Eligibility rules (age, residency, income, assets, held, withdrawn)
apply on top. Unknown facts never widen what is allowed: a product with an age limit is
excluded when the age is unknown, and so on.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from core.catalogue import Catalogue, Product
from core.object_tables import ObjectTable

LOWEST_RISK_LEVEL = 1
HELD_DETAIL = "customer already holds it"


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

    @classmethod
    def of(
        cls,
        age: int | None,
        risk_level: int | None,
        risk_assessed_on: date | None,
        resident: bool | None,
        income: float | None,
        assets: float | None,
        held: frozenset[str],
    ) -> CustomerFacts:
        """The same facts as the constructor gives, built in one step.

        A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
        (about 0.2 us a field); filling the instance's ``__dict__`` at once costs about a
        third of that, on the request path's one construction per decision. Every field is
        given, so the instance is the constructor's (``tests/core/test_suitability.py``).
        """
        facts = object.__new__(cls)
        facts.__dict__.update(
            age=age,
            risk_level=risk_level,
            risk_assessed_on=risk_assessed_on,
            resident=resident,
            income=income,
            assets=assets,
            held=held,
        )
        return facts


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
        return Exclusion(pid, Rule.HELD, HELD_DETAIL)
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
    products: Iterable[Product],
    facts: CustomerFacts,
    today: date,
    validity_days: int,
    catalogue: Catalogue | None = None,
) -> tuple[list[Product], list[Exclusion]]:
    """Partition products into (offerable, exclusions-with-rule).

    ``catalogue``: the catalogue ``products`` come from, when the caller has it: each
    product's verdict is then read from the catalogue's :class:`SuitabilityIndex` (the same
    :func:`exclusion`, worked out once per combination of the facts that decide it); a
    product not of that catalogue is judged by :func:`exclusion` directly.
    """
    valid = assessment_valid(facts, today, validity_days)
    if catalogue is None:
        return partition(
            products, lambda product: exclusion(product, facts, today, validity_days, valid)
        )
    verdicts = suitability_index(catalogue).verdicts(facts, valid)
    held = facts.held
    kept: list[Product] = []
    excluded: list[Exclusion] = []
    verdict_of = verdicts.get
    for product in products:
        pid = product.id
        known = verdict_of(pid)
        if known is None or known[0] is not product:
            reason = exclusion(product, facts, today, validity_days, valid)
        else:
            reason = known[1]
            if known[2] is not None and pid in held:  # after withdrawn, before the rest
                reason = known[2]
        if reason is None:
            kept.append(product)
        else:
            excluded.append(reason)
    return kept, excluded


Verdict = tuple[Product, Exclusion | None, Exclusion | None]
"""(product, its exclusion for facts holding nothing, its exclusion when held - None when
withdrawn, as withdrawal comes first)."""


class SuitabilityIndex:
    """One catalogue's :func:`exclusion` verdicts, by the facts that decide them.

    Apart from the held products, a verdict depends on the facts only through a few
    comparisons: the assessed risk level when the assessment is valid, whether the age,
    income and assets are known and on which side of each threshold of the catalogue they
    fall, and whether the customer is a resident. :meth:`key` reduces the facts to exactly
    those (a position among the sorted thresholds decides every comparison with them), so
    two customers with the same key get the same exclusion, detail included, for every
    product. The verdicts of a key are worked out by :func:`exclusion` itself on first use
    and kept; the number of keys is bounded by the catalogue's thresholds (the table is
    still emptied past :data:`MAX_KEYS`).
    """

    MAX_KEYS = 4096

    __slots__ = ("_max_ages", "_min_ages", "_min_assets", "_min_incomes", "_verdicts", "catalogue")

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        rules = [p.eligibility for p in catalogue.products]
        self._min_ages = sorted({r.min_age for r in rules if r.min_age is not None})
        self._max_ages = sorted({r.max_age for r in rules if r.max_age is not None})
        self._min_incomes = sorted({r.min_income for r in rules if r.min_income is not None})
        self._min_assets = sorted({r.min_assets for r in rules if r.min_assets is not None})
        self._verdicts: dict[tuple[object, ...], dict[str, Verdict]] = {}

    def key(self, facts: CustomerFacts, valid: bool) -> tuple[object, ...]:
        """What decides every verdict but the held products' (see the class docstring)."""
        age, income, assets = facts.age, facts.income, facts.assets
        return (
            facts.risk_level if valid else None,
            None
            if age is None
            else (bisect_right(self._min_ages, age), bisect_left(self._max_ages, age)),
            facts.resident is True,
            None if income is None else bisect_right(self._min_incomes, income),
            None if assets is None else bisect_right(self._min_assets, assets),
        )

    def verdicts(self, facts: CustomerFacts, valid: bool) -> dict[str, Verdict]:
        """Product id -> :data:`Verdict` for customers with ``facts``' key."""
        key = self.key(facts, valid)
        found = self._verdicts.get(key)
        if found is None:
            if len(self._verdicts) >= self.MAX_KEYS:
                self._verdicts.clear()
            alike = CustomerFacts(
                facts.age, facts.risk_level, facts.risk_assessed_on, facts.resident,
                facts.income, facts.assets,
            )  # fmt: skip
            found = self._verdicts[key] = {
                p.id: (
                    p,
                    # today and validity_days are not read: ``valid`` is given.
                    exclusion(p, alike, date.min, 0, valid),
                    Exclusion(p.id, Rule.HELD, HELD_DETAIL) if p.active else None,
                )
                for p in self.catalogue.products
            }
        return found


_INDEXES: ObjectTable[SuitabilityIndex] = ObjectTable(64)


def suitability_index(catalogue: Catalogue) -> SuitabilityIndex:
    """The :class:`SuitabilityIndex` of ``catalogue`` (kept while it is in use; a reload
    brings a new catalogue object, hence a new index)."""
    return _INDEXES.get((catalogue,), None, lambda: SuitabilityIndex(catalogue))


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
