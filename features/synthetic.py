"""A synthetic retail bank whose customers behave for reasons a model can learn.

Every customer gets a latent *needs archetype* (everyday banker, saver, investor, borrower,
young, retiree), a life stage (age, salaried or not) and a risk profile. Those drive which
products they start with and which they ADD each month; what they already hold drives it
too (a payroll account makes the payroll itself and a direct debit likely next). Adds are
rare, as in real banks: a few percent of customers add something in a month.

Churn is a path, not a coin flip: over the 2-4 months before ``left_on`` logins fall to
zero, money flows out (the balance drops by roughly half or more) and products close; after
``left_on`` the customer has no rows at all. Some loyal customers have temporary dips
(a holiday, a large purchase) so that the signal is strong but not perfect.

Everything is vectorised over customers: the only Python loop runs over months. The
simulation starts ``WARM_UP_MONTHS`` before the first published snapshot so that holdings
and balances are already in a steady state (and churn paths already under way) when the
window opens.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from core.catalogue import Catalogue, Product
from core.tables import CHANNELS, Tables

ARCHETYPES = ("everyday", "saver", "investor", "borrower", "young", "retiree")
EVERYDAY, SAVER, INVESTOR, BORROWER, YOUNG, RETIREE = range(len(ARCHETYPES))

WARM_UP_MONTHS = 4
MINOR_SHARE = 0.04
JOIN_IN_WINDOW_SHARE = 0.08
CHURN_START_RATE = 0.015
"""Monthly chance that a customer starts a churn path (scaled by a per-customer risk)."""
DIP_RATE = 0.015
"""Monthly chance that a loyal customer has a temporary dip in logins and balance."""
ADD_SCALE = 1.0
MISSING_ASSESSMENT = 0.10
EXPIRED_ASSESSMENT = 0.10
ASSESSMENT_VALIDITY_DAYS = 730

TIER_LIMITS = (100_000.0, 1_000_000.0)
"""Assets under management: mass below the first, affluent below the second, then private."""

REGIONS = ("Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao", "Malaga", "Zaragoza", "Other")
REGION_WEIGHTS = (0.22, 0.18, 0.1, 0.08, 0.06, 0.06, 0.05, 0.25)
INVESTOR_SEGMENTS = ("trading", "allocation", "advice")
ACQUISITION_CHANNELS = ("branch", "online", "advisor", "partner")
"""How a customer joined (``acquisition_channel``): the young mostly online, investors
often through an advisor. Drawn from a generator of its own, after everything else, so
the rest of a bank generated with the same seed is unchanged by it."""

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

CHANNEL_LOGINS = {"app": 10.0, "push": 8.0, "email": 3.0, "sms": 2.0, "advisor": 1.0, "branch": 0.8}
SAVING_RATE = (0.03, 0.12, 0.08, -0.03, 0.02, -0.01)

ProgressFn = Callable[[str], None]


@dataclass
class _Population:
    """Per-customer attributes (numpy arrays of length ``n``)."""

    n: int
    birth: np.ndarray  # datetime64[D]
    sex: np.ndarray
    archetype: np.ndarray
    salaried: np.ndarray
    income: np.ndarray  # NaN for minors
    assets: np.ndarray
    risk_level: np.ndarray  # 0 = none
    assessed_on: np.ndarray  # datetime64[D], NaT = none
    channel: np.ndarray
    login_rate: np.ndarray
    joined_on: np.ndarray  # datetime64[D]
    join_step: np.ndarray
    churn_risk: np.ndarray
    region: np.ndarray
    resident: np.ndarray
    employee: np.ndarray
    segment: np.ndarray


@dataclass
class _History:
    """What the monthly simulation recorded, one slice per published snapshot."""

    present: np.ndarray  # (months, n) bool
    holdings: np.ndarray  # (months, n, products) int8
    logins: np.ndarray  # (months, n) int32
    balance: np.ndarray  # (months, n) float64
    inflow: np.ndarray
    outflow: np.ndarray
    active: np.ndarray  # (months, n) bool
    left_on: np.ndarray  # (n,) datetime64[D], NaT = still a customer


def month_ends(end_month: date, months: int) -> list[date]:
    """The last days of ``months`` consecutive months ending with ``end_month``."""
    last_day = calendar.monthrange(end_month.year, end_month.month)[1]
    if end_month.day != last_day:
        raise ValueError(f"end_month {end_month} is not the last day of its month")
    if months < 1:
        raise ValueError("months must be at least 1")
    stamps = pd.date_range(end=pd.Timestamp(end_month), periods=months, freq="ME")
    return [s.date() for s in stamps]


def _choice(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One category per row of a ``(n, k)`` probability matrix (vectorised)."""
    cumulative = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True), axis=1)
    return (rng.random(len(probabilities))[:, None] > cumulative).sum(axis=1)


def _population(
    rng: np.random.Generator, n: int, steps: list[date], first_window: int
) -> _Population:
    end = np.datetime64(steps[-1], "D")
    minor = rng.random(n) < MINOR_SHARE
    age = np.where(minor, rng.uniform(10, 18, n), np.clip(rng.normal(46, 17, n), 18, 95))
    birth = end - (age * 365.25).astype("timedelta64[D]")
    sex = np.where(rng.random(n) < 0.5, "F", "M")

    adult_mix = np.tile([0.34, 0.18, 0.12, 0.16, 0.0, 0.0], (n, 1))
    adult_mix[:, YOUNG] = np.where(age < 30, 1.0, 0.0)
    adult_mix[:, RETIREE] = np.where(age >= 65, 1.4, 0.0)
    archetype = np.where(minor, YOUNG, _choice(rng, adult_mix))
    salaried = (~minor) & (age < 65) & (rng.random(n) < 0.62)

    z_income = rng.normal(0, 1, n)
    age_effect = -0.0006 * (age - 50) ** 2
    arche_effect = np.select([archetype == INVESTOR, archetype == YOUNG], [0.35, -0.3], 0.0)
    income = np.exp(10.25 + 0.55 * z_income + age_effect + arche_effect)
    income = np.where(minor, np.nan, income)
    income[(~minor) & (rng.random(n) < 0.03)] = np.nan

    z_assets = 0.55 * z_income + 0.835 * rng.normal(0, 1, n)
    boost = np.select(
        [archetype == INVESTOR, archetype == RETIREE, archetype == YOUNG], [0.9, 0.6, -1.2], 0.0
    )
    assets = np.exp(np.log(13_000) + 2.2 * z_assets + boost)
    assets = np.where(minor, np.exp(rng.normal(np.log(800), 1.0, n)), assets)

    score = (
        1.1 * (archetype == INVESTOR) + 0.35 * z_income - 0.02 * (age - 45) + rng.normal(0, 1, n)
    )
    cuts = np.quantile(score, [0.12, 0.42, 0.75, 0.93])
    risk_level = (np.searchsorted(cuts, score) + 1).astype(np.int8)
    status = rng.random(n)
    # Minors are never assessed; adults miss just often enough for MISSING_ASSESSMENT overall.
    adult_missing = max(MISSING_ASSESSMENT - MINOR_SHARE, 0.0) / (1 - MINOR_SHARE)
    missing = minor | (status < adult_missing)
    expired = (~missing) & (status >= adult_missing) & (status < adult_missing + EXPIRED_ASSESSMENT)
    days_ago = np.where(
        expired,
        rng.integers(ASSESSMENT_VALIDITY_DAYS + 1, 2_500, n),
        rng.integers(0, ASSESSMENT_VALIDITY_DAYS - 30, n),
    )
    assessed_on = (end - days_ago.astype("timedelta64[D]")).astype("datetime64[D]")
    assessed_on[missing] = np.datetime64("NaT")
    risk_level[missing] = 0

    old = np.clip((age - 18) / 60, 0, 1)[:, None]
    digital = np.array([0.35, 0.25, 0.15, 0.1, 0.05, 0.1])
    personal = np.array([0.08, 0.05, 0.12, 0.1, 0.3, 0.35])
    channel = _choice(rng, (1 - old) * digital + old * personal)
    base = np.array([CHANNEL_LOGINS[c] for c in CHANNELS])[channel]
    login_rate = (
        base * np.where(age < 30, 1.2, np.where(age >= 70, 0.6, 1.0)) * rng.gamma(2.0, 0.5, n)
    )

    join_step = np.zeros(n, dtype=np.int64)
    joiners = rng.random(n) < JOIN_IN_WINDOW_SHARE
    join_step[joiners] = (
        rng.integers(first_window + 1, len(steps), joiners.sum())
        if len(steps) > first_window + 1
        else 0
    )
    step_days = np.array(steps, dtype="datetime64[D]")
    previous = step_days[np.maximum(join_step - 1, 0)]
    within = (step_days[join_step] - previous).astype(np.int64)
    joined_late = previous + (rng.random(n) * np.maximum(within, 1)).astype("timedelta64[D]") + 1
    max_tenure_days = np.maximum((age - np.where(minor, 0, 16)) * 365.25, 60)
    tenure = np.minimum(rng.exponential(7 * 365.25, n), max_tenure_days).astype(np.int64) + 1
    joined_early = step_days[0] - tenure.astype("timedelta64[D]")
    joined_on = np.where(join_step > 0, joined_late, joined_early).astype("datetime64[D]")

    tenure_years = (end - joined_on).astype(np.int64) / 365.25
    churn_risk = np.exp(
        0.5 * (archetype == YOUNG)
        - 0.4 * (archetype == RETIREE)
        - 0.25 * np.minimum(tenure_years, 10) / 5
        + 0.5 * (login_rate < 1.5)
        + rng.normal(0, 0.3, n)
    )
    churn_risk /= churn_risk.mean()

    region = np.array(REGIONS)[_choice(rng, np.tile(REGION_WEIGHTS, (n, 1)))]
    investor_segment = np.array(INVESTOR_SEGMENTS)[
        _choice(rng, np.where((age < 40)[:, None], [0.5, 0.3, 0.2], [0.2, 0.4, 0.4]))
    ]
    segment = np.full(n, None, dtype=object)
    segment[archetype == INVESTOR] = investor_segment[archetype == INVESTOR]
    return _Population(
        n=n,
        birth=birth.astype("datetime64[D]"),
        sex=sex,
        archetype=archetype,
        salaried=salaried,
        income=income,
        assets=assets,
        risk_level=risk_level,
        assessed_on=assessed_on,
        channel=channel,
        login_rate=login_rate,
        joined_on=joined_on,
        join_step=join_step,
        churn_risk=churn_risk,
        region=region,
        resident=rng.random(n) < 0.95,
        employee=rng.random(n) < 0.01,
        segment=segment,
    )


@dataclass
class _Rules:
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


def _rules(products: list[Product]) -> _Rules:
    ids = [p.id for p in products]
    rates = [RATES.get(pid, GENERIC_RATES) for pid in ids]

    def limit(values: list[float | None], default: float) -> np.ndarray:
        return np.array([default if v is None else float(v) for v in values])

    drivers = [
        (ids.index(src), ids.index(dst), mult)
        for src, dst, mult in DRIVERS
        if src in ids and dst in ids
    ]
    return _Rules(
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


def _eligible(rules: _Rules, pop: _Population, age: np.ndarray, balance: np.ndarray) -> np.ndarray:
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


def _driver_boost(rules: _Rules, held: np.ndarray) -> np.ndarray:
    boost = np.ones(held.shape)
    for source, target, multiplier in rules.drivers:
        boost[:, target] *= np.where(held[:, source], multiplier, 1.0)
    return boost


def _starting_holdings(
    rng: np.random.Generator,
    rules: _Rules,
    pop: _Population,
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
    boosted = np.clip(p * _driver_boost(rules, held), 0.0, 0.95) * eligible
    return held | (rng.random(p.shape) < (boosted - p))


def _draw_join_balance(rng: np.random.Generator, assets: np.ndarray) -> np.ndarray:
    return assets * rng.uniform(0.2, 0.6, len(assets))


def _simulate(
    rng: np.random.Generator,
    pop: _Population,
    rules: _Rules,
    steps: list[date],
    months: int,
    progress: ProgressFn | None,
) -> _History:
    """Run the bank month by month (vectorised over customers); record the last ``months``."""
    n, products, first_window = pop.n, len(rules.ids), len(steps) - months
    step_days = np.array(steps, dtype="datetime64[D]")
    history = _History(
        present=np.zeros((months, n), dtype=bool),
        holdings=np.zeros((months, n, products), dtype=np.int8),
        logins=np.zeros((months, n), dtype=np.int32),
        balance=np.zeros((months, n)),
        inflow=np.zeros((months, n)),
        outflow=np.zeros((months, n)),
        active=np.zeros((months, n), dtype=bool),
        left_on=np.full(n, np.datetime64("NaT"), dtype="datetime64[D]"),
    )
    held = np.zeros((n, products), dtype=bool)
    balance = np.zeros(n)
    previous_balance = np.zeros(n)
    gone = np.zeros(n, dtype=bool)
    churn_start = np.full(n, -1)
    churn_length = rng.integers(2, 5, n)
    dip_until = np.full(n, -1)
    payroll = rules.index("payroll")
    junior = rules.index("junior_account")
    monthly_income = np.where(np.isnan(pop.income), 720.0, pop.income) / 12
    earnings_share = np.where(pop.salaried, 1.0, np.where(pop.archetype == RETIREE, 0.6, 0.4))
    saving = np.array(SAVING_RATE)[pop.archetype]
    effective_risk = np.maximum(pop.risk_level, 1)[:, None]
    suitable = np.where(rules.risk[None, :] <= effective_risk, 1.0, UNSUITABLE_FACTOR)

    for k, day in enumerate(step_days):
        age = (day - pop.birth).astype(np.int64) / 365.25
        arriving = (pop.join_step == k) & ~gone
        present = (pop.join_step <= k) & ~gone
        if arriving.any():
            start = np.where(k == 0, pop.assets, _draw_join_balance(rng, pop.assets))
            balance = np.where(arriving, start, balance)
            eligible = _eligible(rules, pop, age, balance)
            fresh = _starting_holdings(rng, rules, pop, eligible, age, newcomer=k > 0)
            held = np.where(arriving[:, None], fresh, held)

        # Churn paths and temporary dips.
        can_start = present & (churn_start < 0) & (pop.join_step < k) & (k >= first_window - 1)
        starting = can_start & (rng.random(n) < CHURN_START_RATE * pop.churn_risk)
        churn_start = np.where(starting, k, churn_start)
        churning = present & (churn_start >= 0)
        position = k - churn_start
        fraction = (position + 1) / churn_length
        dipping = present & ~churning & ((dip_until >= k) | (rng.random(n) < DIP_RATE))
        dip_until = np.where(dipping & (dip_until < k), k + rng.integers(0, 2, n), dip_until)

        # Money: earnings in, spending out, plus churn or dip outflows.
        inflow = monthly_income * earnings_share * rng.lognormal(0.0, 0.25, n)
        inflow += balance * rng.uniform(0.0, 0.02, n)
        outflow = inflow * (1 - saving) * rng.lognormal(0.0, 0.1, n)
        outflow += balance * rng.uniform(0.0, 0.02, n)
        outflow += np.where(churning, balance * rng.uniform(0.3, 0.5, n), 0.0)
        outflow += np.where(dipping & (dip_until >= k), balance * rng.uniform(0.05, 0.3, n), 0.0)
        outflow = np.minimum(outflow, balance + inflow)
        previous_balance, balance = balance, np.where(present, balance + inflow - outflow, balance)

        # Logins: the customer's own rate, fading to zero along a churn path.
        multiplier = np.where(churning, np.clip(1 - 1.25 * fraction, 0, 1), 1.0)
        multiplier = np.where(dipping, 0.15, multiplier)
        logins = rng.poisson(pop.login_rate * multiplier)

        # Products: adds driven by archetype, life stage and what is held; drops; closures.
        eligible = _eligible(rules, pop, age, balance)
        p_add = rules.add[pop.archetype] * ADD_SCALE * _driver_boost(rules, held)
        p_add *= np.where(pop.salaried[:, None], rules.salaried_boost, 1.0) * suitable
        rising = balance > previous_balance * 1.05
        p_add[:, rules.deposit] *= np.where(rising, BALANCE_RISE_BOOST, 1.0)[:, None]
        p_add = np.clip(p_add, 0, 0.5) * eligible * rules.on_sale * ~held
        p_add[churning | ~present | arriving] = 0.0
        adds = rng.random((n, products)) < p_add
        p_drop = np.broadcast_to(rules.drop, (n, products)).copy()
        closing = np.select(
            [churning & (position == churn_length - 1), churning & (position == churn_length - 2)],
            [0.6, 0.2],
            0.0,
        )
        p_drop = np.maximum(p_drop, closing[:, None])
        if junior is not None:
            p_drop[:, junior] = np.where(age >= 18, 1.0, p_drop[:, junior])
        drops = (rng.random((n, products)) < p_drop) & present[:, None] & ~arriving[:, None]
        held = (held & ~drops) | adds

        active = logins > 0
        if payroll is not None:
            active |= held[:, payroll]
        t = k - first_window
        if t >= 0:
            history.present[t] = present
            history.holdings[t] = held & present[:, None]
            history.logins[t] = np.where(present, logins, 0)
            history.balance[t] = np.where(present, balance, 0.0)
            history.inflow[t] = np.where(present, inflow, 0.0)
            history.outflow[t] = np.where(present, outflow, 0.0)
            history.active[t] = present & active
            if progress is not None:
                progress(f"month {t + 1}/{months} simulated")

        # The last month of a churn path: the relationship ends before the next snapshot.
        leaving = churning & (position == churn_length - 1)
        if k + 1 < len(step_days):
            gap = (step_days[k + 1] - day).astype(np.int64)
            left = day + (1 + rng.integers(0, max(gap, 1), n)).astype("timedelta64[D]")
            history.left_on = np.where(leaving, left, history.left_on)
            gone |= leaving
    return history


def _customer_ids(n: int) -> np.ndarray:
    width = max(7, len(str(n)))
    return np.char.add("S", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


def _tiers(history: _History) -> np.ndarray:
    """Tier from assets under management at each customer's latest snapshot."""
    months = history.present.shape[0]
    last = months - 1 - np.argmax(history.present[::-1], axis=0)
    aum = history.balance[last, np.arange(history.present.shape[1])]
    return np.array(["mass", "affluent", "private"])[
        np.searchsorted(TIER_LIMITS, aum, side="right")
    ]


def _acquisition_channels(rng: np.random.Generator, pop: _Population) -> np.ndarray:
    young = pop.archetype == YOUNG
    investor = pop.archetype == INVESTOR
    p = np.tile([0.55, 0.25, 0.1, 0.1], (pop.n, 1))
    p[young] = [0.25, 0.6, 0.05, 0.1]
    p[investor] = [0.35, 0.2, 0.4, 0.05]
    return np.array(ACQUISITION_CHANNELS, dtype=object)[_choice(rng, p)]


def _assemble(
    pop: _Population,
    rules: _Rules,
    history: _History,
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
    population = _population(rng, customers, steps, WARM_UP_MONTHS)
    rules = _rules(catalogue.holdable)
    history = _simulate(rng, population, rules, steps, months, progress)
    if progress is not None:
        progress("assembling tables")
    acquisition = _acquisition_channels(np.random.default_rng([seed, 1]), population)
    return _assemble(population, rules, history, window, acquisition)
