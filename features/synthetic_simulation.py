"""The synthetic bank month by month: money, logins, adds, drops and churn paths.

Churn is a path, not a coin flip: over the 2-4 months before ``left_on`` logins fall to
zero, money flows out (the balance drops by roughly half or more) and products close; after
``left_on`` the customer has no rows at all. Some loyal customers have temporary dips
(a holiday, a large purchase) so that the signal is strong but not perfect.

Everything is vectorised over customers: the only Python loop runs over months.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np

from features.synthetic_population import RETIREE, Population
from features.synthetic_products import (
    BALANCE_RISE_BOOST,
    UNSUITABLE_FACTOR,
    ProductRules,
    driver_boost,
    eligible_products,
    starting_holdings,
)

CHURN_START_RATE = 0.015
"""Monthly chance that a customer starts a churn path (scaled by a per-customer risk)."""
DIP_RATE = 0.015
"""Monthly chance that a loyal customer has a temporary dip in logins and balance."""
ADD_SCALE = 1.0
SAVING_RATE = (0.03, 0.12, 0.08, -0.03, 0.02, -0.01)

ProgressFn = Callable[[str], None]
"""Called with a one-line progress message (e.g. ``month 3/12 simulated``)."""


@dataclass
class History:
    """What the monthly simulation recorded, one slice per published snapshot."""

    present: np.ndarray  # (months, n) bool
    holdings: np.ndarray  # (months, n, products) int8
    logins: np.ndarray  # (months, n) int32
    balance: np.ndarray  # (months, n) float64
    inflow: np.ndarray
    outflow: np.ndarray
    active: np.ndarray  # (months, n) bool
    left_on: np.ndarray  # (n,) datetime64[D], NaT = still a customer


def _draw_join_balance(rng: np.random.Generator, assets: np.ndarray) -> np.ndarray:
    return assets * rng.uniform(0.2, 0.6, len(assets))


def simulate(
    rng: np.random.Generator,
    pop: Population,
    rules: ProductRules,
    steps: list[date],
    months: int,
    progress: ProgressFn | None,
) -> History:
    """Run the bank month by month (vectorised over customers); record the last ``months``."""
    n, products, first_window = pop.n, len(rules.ids), len(steps) - months
    step_days = np.array(steps, dtype="datetime64[D]")
    history = History(
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
            eligible = eligible_products(rules, pop, age, balance)
            fresh = starting_holdings(rng, rules, pop, eligible, age, newcomer=k > 0)
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
        eligible = eligible_products(rules, pop, age, balance)
        p_add = rules.add[pop.archetype] * ADD_SCALE * driver_boost(rules, held)
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
