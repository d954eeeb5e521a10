"""What drives the synthetic bank's holdings: per-product rates, cross-product drivers,
the catalogue's eligibility rules, and the products each customer starts with.

Adds are rare, as in real banks: a few percent of customers add something in a month.
What a customer already holds drives the next add (a payroll account makes the payroll
itself and a direct debit likely next).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.catalogue import Product
from features.synthetic_population import Population

# Per product: starting probability by archetype, monthly add rate (%) by archetype,
# monthly drop rate (%). Archetype order: everyday, saver, investor, borrower, young, retiree.
# Products missing here (a catalogue extension) get GENERIC_RATES.
RATES: dict[str, tuple[tuple[float, ...], tuple[float, ...], float]] = {
    "savings_account": (
        (0.03, 0.15, 0.05, 0.02, 0.05, 0.08),
        (0.05, 0.4, 0.1, 0.03, 0.1, 0.1),
        0.3,
    ),
    "guarantees": (
        (0.001, 0.001, 0.005, 0.01, 0, 0.001),
        (0.005, 0.005, 0.02, 0.05, 0, 0.005),
        1.0,
    ),
    "current_account": ((0.9, 0.85, 0.85, 0.9, 0.7, 0.85), (1.0, 1.0, 1.0, 1.0, 1.5, 0.5), 0.1),
    "derivatives_account": ((0, 0, 0.01, 0, 0, 0), (0, 0, 0.05, 0, 0, 0), 0.5),
    "payroll_account": ((0.1, 0.08, 0.08, 0.12, 0.05, 0.02), (0.3, 0.2, 0.2, 0.3, 0.4, 0.05), 0.3),
    "junior_account": ((0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0), 0.2),
    "mas_particular_account": ((0.01,) * 6, (0.05,) * 6, 0.5),
    "particular_account": ((0.12, 0.15, 0.15, 0.1, 0.05, 0.2), (0.2, 0.3, 0.3, 0.2, 0.1, 0.2), 0.3),
    "particular_plus_account": (
        (0.03, 0.05, 0.08, 0.03, 0.01, 0.05),
        (0.05, 0.1, 0.2, 0.05, 0.02, 0.05),
        0.3,
    ),
    "short_term_deposit": (
        (0.002, 0.02, 0.01, 0, 0, 0.01),
        (0.02, 0.4, 0.15, 0.01, 0.02, 0.15),
        15,
    ),
    "medium_term_deposit": ((0.002, 0.02, 0.01, 0, 0, 0.015), (0.02, 0.2, 0.1, 0.01, 0, 0.1), 6.0),
    "long_term_deposit": (
        (0.01, 0.12, 0.06, 0.005, 0.005, 0.1),
        (0.03, 0.5, 0.2, 0.02, 0.02, 0.3),
        2,
    ),
    "e_account": ((0.06, 0.1, 0.12, 0.06, 0.1, 0.03), (0.3, 0.3, 0.4, 0.3, 0.8, 0.05), 0.3),
    "funds": ((0.01, 0.03, 0.2, 0.01, 0.005, 0.05), (0.03, 0.1, 1.0, 0.03, 0.03, 0.1), 0.5),
    "mortgage": ((0.03, 0.02, 0.03, 0.2, 0.01, 0.01), (0.02, 0.01, 0.02, 0.4, 0.05, 0), 0.4),
    "pension_plan": ((0.02, 0.05, 0.15, 0.02, 0.005, 0.02), (0.03, 0.1, 0.5, 0.03, 0.03, 0), 0.2),
    "loans": ((0.01, 0.005, 0.01, 0.15, 0.02, 0.005), (0.05, 0.01, 0.03, 0.8, 0.15, 0.01), 3.0),
    "taxes": ((0.04, 0.05, 0.08, 0.05, 0.01, 0.06), (0.1, 0.1, 0.2, 0.1, 0.05, 0.05), 0.5),
    "credit_card": ((0.08, 0.05, 0.12, 0.25, 0.05, 0.05), (0.3, 0.15, 0.4, 0.8, 0.5, 0.1), 0.5),
    "securities": ((0.01, 0.02, 0.15, 0.01, 0.005, 0.05), (0.03, 0.05, 0.6, 0.02, 0.03, 0.05), 0.5),
    "home_account": ((0.005, 0.01, 0.005, 0.01, 0, 0.01), (0,) * 6, 0.3),
    "payroll": ((0.02, 0.02, 0.02, 0.02, 0.01, 0.0), (0.05, 0.05, 0.05, 0.05, 0.05, 0.0), 0.5),
    "pension_payroll": ((0.02, 0.02, 0.02, 0.02, 0, 0.6), (0.05, 0.05, 0.05, 0.05, 0, 1.0), 0.1),
    "direct_debit": ((0.3, 0.2, 0.25, 0.3, 0.05, 0.25), (0.4, 0.3, 0.3, 0.4, 0.3, 0.2), 0.8),
}
GENERIC_RATES = ((0.01,) * 6, (0.05,) * 6, 0.5)

# (held product, product it makes likelier, multiplier of the monthly add rate)
DRIVERS = (
    ("payroll_account", "payroll", 15.0),
    ("payroll_account", "direct_debit", 4.0),
    ("payroll", "direct_debit", 3.0),
    ("payroll", "credit_card", 2.0),
    ("current_account", "credit_card", 2.0),
    ("mortgage", "direct_debit", 3.0),
    ("payroll_account", "loans", 2.0),
    ("funds", "securities", 3.0),
    ("securities", "funds", 2.0),
    ("particular_account", "particular_plus_account", 3.0),
    ("e_account", "taxes", 1.5),
)
SALARIED_BOOST = {"payroll_account": 4.0, "payroll": 3.0, "direct_debit": 1.5}
DEPOSITS = ("short_term_deposit", "medium_term_deposit", "long_term_deposit")
BALANCE_RISE_BOOST = 3.0
UNSUITABLE_FACTOR = 0.15
"""Products above the customer's risk level are rarely bought (banks may not push them)."""


@dataclass
class ProductRules:
    """Catalogue-aligned product parameters as arrays (column j = ``ids[j]``)."""

    ids: list[str]
    init: np.ndarray  # (archetypes, products) starting probability
    add: np.ndarray  # (archetypes, products) monthly add probability
    drop: np.ndarray  # (products,) monthly drop probability
    min_age: np.ndarray
    max_age: np.ndarray
    residents_only: np.ndarray
    min_income: np.ndarray
    min_assets: np.ndarray
    risk: np.ndarray
    on_sale: np.ndarray
    salaried_boost: np.ndarray
    deposit: np.ndarray  # (products,) bool
    drivers: list[tuple[int, int, float]]

    def index(self, product_id: str) -> int | None:
        return self.ids.index(product_id) if product_id in self.ids else None


def product_rules(products: list[Product]) -> ProductRules:
    """The rates and eligibility of ``products``, in their order."""
    ids = [p.id for p in products]
    rates = [RATES.get(pid, GENERIC_RATES) for pid in ids]

    def limit(values: list[float | None], default: float) -> np.ndarray:
        return np.array([default if v is None else float(v) for v in values])

    drivers = [
        (ids.index(src), ids.index(dst), mult)
        for src, dst, mult in DRIVERS
        if src in ids and dst in ids
    ]
    return ProductRules(
        ids=ids,
        init=np.array([r[0] for r in rates]).T,
        add=np.array([r[1] for r in rates]).T / 100.0,
        drop=np.array([r[2] for r in rates]) / 100.0,
        min_age=limit([p.eligibility.min_age for p in products], -np.inf),
        max_age=limit([p.eligibility.max_age for p in products], np.inf),
        residents_only=np.array([p.eligibility.residents_only for p in products]),
        min_income=limit([p.eligibility.min_income for p in products], -np.inf),
        min_assets=limit([p.eligibility.min_assets for p in products], -np.inf),
        risk=np.array([p.risk_level for p in products]),
        on_sale=np.array([p.active for p in products]),
        salaried_boost=np.array([SALARIED_BOOST.get(pid, 1.0) for pid in ids]),
        deposit=np.array([pid in DEPOSITS for pid in ids]),
        drivers=drivers,
    )


def eligible_products(
    rules: ProductRules, pop: Population, age: np.ndarray, balance: np.ndarray
) -> np.ndarray:
    """``(n, products)``: the catalogue's eligibility rules (unknown income never qualifies)."""
    years = np.floor(age)[:, None]
    income = np.nan_to_num(pop.income, nan=-np.inf)[:, None]
    return (
        (years >= rules.min_age)
        & (years <= rules.max_age)
        & (~rules.residents_only | pop.resident[:, None])
        & (income >= rules.min_income)
        & (balance[:, None] >= rules.min_assets)
    )


def driver_boost(rules: ProductRules, held: np.ndarray) -> np.ndarray:
    """``(n, products)`` multipliers of the add rate from what each customer holds."""
    boost = np.ones(held.shape)
    for source, target, multiplier in rules.drivers:
        boost[:, target] *= np.where(held[:, source], multiplier, 1.0)
    return boost


def starting_holdings(
    rng: np.random.Generator,
    rules: ProductRules,
    pop: Population,
    eligible: np.ndarray,
    age: np.ndarray,
    newcomer: bool,
) -> np.ndarray:
    """Holdings of customers at their first month (long-standing ones or newcomers)."""
    p = rules.init[pop.archetype] * np.where(pop.salaried[:, None], rules.salaried_boost, 1.0)
    if newcomer:  # a new customer starts with fewer products, but with an account
        p = p * 0.4
    junior, current = rules.index("junior_account"), rules.index("current_account")
    if current is not None:
        p[:, current] = np.where(age < 18, 0.3, 0.95 if newcomer else p[:, current])
    if junior is not None:
        p[:, junior] = np.where(age < 18, 0.85, 0.0)
    p = np.clip(p, 0.0, 0.95) * eligible
    held = rng.random(p.shape) < p
    # Second pass: what is held makes related products likelier (payroll with its account).
    boosted = np.clip(p * driver_boost(rules, held), 0.0, 0.95) * eligible
    return held | (rng.random(p.shape) < (boosted - p))
