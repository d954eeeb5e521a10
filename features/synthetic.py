"""A synthetic retail bank whose customers behave for reasons a model can learn.

Customers are drawn once (``features.synthetic_population``: needs archetype, life stage,
risk profile), then the bank runs month by month (``features.synthetic_simulation``):
archetype, life stage and what is already held drive which products customers ADD
(``features.synthetic_products``), and churn is a path of fading logins, outflows and
closures before ``left_on``. Term deposits and loans become dated contracts
(``features.synthetic_contracts``), which decide what happens to a deposit's money at
maturity. The recorded months become the canonical tables here.

The simulation starts ``WARM_UP_MONTHS`` before the first published snapshot so that
holdings and balances are already in a steady state (and churn paths already under way)
when the window opens.
"""

from __future__ import annotations

import calendar
from datetime import date

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.tables import CHANNELS, Tables
from features.synthetic_contracts import plant_contracts
from features.synthetic_population import Population, draw_acquisition_channels, draw_population
from features.synthetic_products import ProductRules, product_rules
from features.synthetic_simulation import History, ProgressFn, simulate

WARM_UP_MONTHS = 4

TIER_LIMITS = (100_000.0, 1_000_000.0)
"""Assets under management: mass below the first, affluent below the second, then private."""


def month_ends(end_month: date, months: int) -> list[date]:
    """The last days of ``months`` consecutive months ending with ``end_month``."""
    last_day = calendar.monthrange(end_month.year, end_month.month)[1]
    if end_month.day != last_day:
        raise ValueError(f"end_month {end_month} is not the last day of its month")
    if months < 1:
        raise ValueError("months must be at least 1")
    stamps = pd.date_range(end=pd.Timestamp(end_month), periods=months, freq="ME")
    return [s.date() for s in stamps]


def _customer_ids(n: int) -> np.ndarray:
    width = max(7, len(str(n)))
    return np.char.add("S", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


def _tiers(history: History) -> np.ndarray:
    """Tier from assets under management at each customer's latest snapshot."""
    months = history.present.shape[0]
    last = months - 1 - np.argmax(history.present[::-1], axis=0)
    aum = history.balance[last, np.arange(history.present.shape[1])]
    return np.array(["mass", "affluent", "private"])[
        np.searchsorted(TIER_LIMITS, aum, side="right")
    ]


def _assemble(
    pop: Population,
    rules: ProductRules,
    history: History,
    window: list[date],
    acquisition: np.ndarray,
) -> Tables:
    ids = _customer_ids(pop.n)
    risk_level = pd.array(pop.risk_level, dtype="Int8")
    risk_level[pop.risk_level == 0] = pd.NA
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "birth_date": pop.birth.astype("datetime64[ns]"),
            "sex": pop.sex.astype(object),
            "joined_on": pop.joined_on.astype("datetime64[ns]"),
            "left_on": history.left_on.astype("datetime64[ns]"),
            "tier": _tiers(history).astype(object),
            "segment": pop.segment,
            "income": pop.income,
            "region": pop.region.astype(object),
            "resident": pop.resident,
            "employee": pop.employee,
            "risk_level": risk_level,
            "risk_assessed_on": pop.assessed_on.astype("datetime64[ns]"),
            "preferred_channel": np.array(CHANNELS, dtype=object)[pop.channel],
            "acquisition_channel": acquisition,
        }
    )
    # Rows in customer-major order: every present (customer, month) pair.
    present = history.present.T
    customer_index, month_index = np.nonzero(present)
    month = np.array(window, dtype="datetime64[D]").astype("datetime64[ns]")[month_index]
    holdings = pd.DataFrame(
        history.holdings.transpose(1, 0, 2)[present], columns=rules.ids, dtype=np.int8
    )
    holdings.insert(0, "month", month)
    holdings.insert(0, "customer_id", ids[customer_index])

    def pick(values: np.ndarray) -> np.ndarray:
        return values.T[present]

    behaviour = pd.DataFrame(
        {
            "customer_id": ids[customer_index],
            "month": month,
            "logins": pd.array(pick(history.logins), dtype="Int32"),
            "balance": np.round(pick(history.balance), 2),
            "inflow": np.round(pick(history.inflow), 2),
            "outflow": np.round(pick(history.outflow), 2),
            "active": pd.array(pick(history.active), dtype="boolean"),
        }
    )
    return Tables(customers=customers, holdings=holdings, behaviour=behaviour)


def generate_bank(
    customers: int,
    months: int,
    seed: int,
    catalogue: Catalogue,
    end_month: date,
    progress: ProgressFn | None = None,
) -> Tables:
    """A synthetic bank: ``customers`` customers over ``months`` month-end snapshots.

    Snapshots are the last days of the ``months`` months ending with ``end_month`` (which
    must itself be a month end). The same arguments always give the same tables. Holdings
    columns are ``catalogue.holdable`` in catalogue order; products the generator has no
    specific rates for get small generic ones, withdrawn products are never newly added.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    window = month_ends(end_month, months)
    steps = month_ends(end_month, months + WARM_UP_MONTHS)
    rng = np.random.default_rng(seed)
    if progress is not None:
        progress(f"drawing {customers:,} customers")
    population = draw_population(rng, customers, steps, WARM_UP_MONTHS)
    rules = product_rules(catalogue.holdable)
    history = simulate(rng, population, rules, steps, months, progress)
    if progress is not None:
        progress("assembling tables")
    acquisition = draw_acquisition_channels(np.random.default_rng([seed, 1]), population)
    contracts = plant_contracts(
        np.random.default_rng([seed, 2]),
        population,
        rules,
        history,
        window,
        _customer_ids(customers),
    )
    tables = _assemble(population, rules, history, window, acquisition)
    tables.contracts = contracts
    return tables
