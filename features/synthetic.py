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
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.partitions import partitions_of
from core.tables import CHANNELS, Tables, empty_tables
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
    return _format_ids(np.arange(1, n + 1), n)


def _format_ids(numbers: np.ndarray, customers: int) -> np.ndarray:
    """``S`` and the customer number, zero-padded to the width of the bank's largest."""
    width = max(7, len(str(customers)))
    if len(numbers) == 0:
        return np.empty(0, dtype=object)
    return np.char.add("S", np.char.zfill(numbers.astype(str), width)).astype(object)


ID_BLOCK = 1_000_000
"""Customer ids hashed per step when the bank is split into partitions."""


def partition_numbers(customers: int, partitions: int) -> list[np.ndarray]:
    """Per partition, the customer numbers (1..customers) whose id falls in it.

    Ids are hashed ``ID_BLOCK`` at a time (``core.partitions.partitions_of``), so a
    10 M-customer bank needs its 80 MB of numbers, never 10 M strings at once.
    """
    where = np.empty(customers, dtype=np.int32)
    for start in range(0, customers, ID_BLOCK):
        numbers = np.arange(start + 1, min(customers, start + ID_BLOCK) + 1)
        where[start : start + len(numbers)] = partitions_of(
            _format_ids(numbers, customers), partitions
        )
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(partitions + 1))
    return [order[bounds[k] : bounds[k + 1]] + 1 for k in range(partitions)]


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
    ids: np.ndarray,
) -> Tables:
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
    return _generate(_customer_ids(customers), months, seed, catalogue, end_month, progress)


def generate_partitions(
    customers: int,
    months: int,
    seed: int,
    catalogue: Catalogue,
    end_month: date,
    partitions: int,
    progress: ProgressFn | None = None,
) -> Iterator[tuple[int, Tables]]:
    """The bank of :func:`generate_bank` made one hash partition at a time.

    Partition ``k`` holds the customers whose id (``S0000001`` ... up to ``customers``)
    falls in it (``core/partitions.py``), drawn and simulated on their own with the seed
    ``(seed, k, partitions)``; its contracts are numbered ``K<k><n>``. Only one
    partition is in memory at a time. The bank is deterministic for (``customers``,
    ``seed``, ``partitions``); with one partition it is exactly :func:`generate_bank`, with
    more it is another draw of the same kind of bank.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if partitions == 1:
        yield 0, generate_bank(customers, months, seed, catalogue, end_month, progress)
        return
    numbers = partition_numbers(customers, partitions)
    for k in range(partitions):
        ids = _format_ids(numbers[k], customers)
        numbers[k] = numbers[k][:0]  # release this partition's numbers with it

        def step(stage: str, k: int = k) -> None:
            if progress is not None:
                progress(f"partition {k + 1}/{partitions}: {stage}")

        if len(ids) == 0:  # a partition no id falls in: written empty
            yield k, empty_tables([p.id for p in catalogue.holdable])
            continue
        tables = _generate(ids, months, [seed, k, partitions], catalogue, end_month, step)
        tables.contracts["contract_id"] = [
            f"K{k:05d}{n + 1:09d}" for n in range(len(tables.contracts))
        ]
        yield k, tables


def _generate(
    ids: np.ndarray,
    months: int,
    seed: int | list[int],
    catalogue: Catalogue,
    end_month: date,
    progress: ProgressFn | None,
) -> Tables:
    customers = len(ids)
    window = month_ends(end_month, months)
    steps = month_ends(end_month, months + WARM_UP_MONTHS)
    entropy = [seed] if isinstance(seed, int) else seed
    rng = np.random.default_rng(seed)
    if progress is not None:
        progress(f"drawing {customers:,} customers")
    population = draw_population(rng, customers, steps, WARM_UP_MONTHS)
    rules = product_rules(catalogue.holdable)
    history = simulate(rng, population, rules, steps, months, progress)
    if progress is not None:
        progress("assembling tables")
    acquisition = draw_acquisition_channels(np.random.default_rng([*entropy, 1]), population)
    contracts = plant_contracts(
        np.random.default_rng([*entropy, 2]), population, rules, history, window, ids
    )
    tables = _assemble(population, rules, history, window, acquisition, ids)
    tables.contracts = contracts
    return tables
