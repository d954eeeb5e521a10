"""The synthetic bank's customers as drawn once: who they are before the first month runs.

Each customer gets a latent *needs archetype*, a life stage (age, salaried or not), income
and assets, a risk assessment (some missing, some expired), a preferred channel and login
rate, a joining date (a few join inside the published window) and a churn risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from core.tables import CHANNELS

ARCHETYPES = ("everyday", "saver", "investor", "borrower", "young", "retiree")
EVERYDAY, SAVER, INVESTOR, BORROWER, YOUNG, RETIREE = range(len(ARCHETYPES))

MINOR_SHARE = 0.04
JOIN_IN_WINDOW_SHARE = 0.08
MISSING_ASSESSMENT = 0.10
EXPIRED_ASSESSMENT = 0.10
ASSESSMENT_VALIDITY_DAYS = 730

REGIONS = ("Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao", "Malaga", "Zaragoza", "Other")
REGION_WEIGHTS = (0.22, 0.18, 0.1, 0.08, 0.06, 0.06, 0.05, 0.25)
INVESTOR_SEGMENTS = ("trading", "allocation", "advice")
ACQUISITION_CHANNELS = ("branch", "online", "advisor", "partner")
"""How a customer joined (``acquisition_channel``): the young mostly online, investors
often through an advisor. Drawn from a generator of its own, after everything else, so
the rest of a bank generated with the same seed is unchanged by it."""

CHANNEL_LOGINS = {"app": 10.0, "push": 8.0, "email": 3.0, "sms": 2.0, "advisor": 1.0, "branch": 0.8}
"""Mean monthly logins by preferred channel, before the per-customer spread."""


@dataclass
class Population:
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


def _choice(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One category per row of a ``(n, k)`` probability matrix (vectorised)."""
    cumulative = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True), axis=1)
    return (rng.random(len(probabilities))[:, None] > cumulative).sum(axis=1)


def draw_population(
    rng: np.random.Generator, n: int, steps: list[date], first_window: int
) -> Population:
    """``n`` customers as of the last of ``steps``; a few join after step ``first_window``."""
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
    return Population(
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


def draw_acquisition_channels(rng: np.random.Generator, pop: Population) -> np.ndarray:
    """One of ``ACQUISITION_CHANNELS`` per customer."""
    young = pop.archetype == YOUNG
    investor = pop.archetype == INVESTOR
    p = np.tile([0.55, 0.25, 0.1, 0.1], (pop.n, 1))
    p[young] = [0.25, 0.6, 0.05, 0.1]
    p[investor] = [0.35, 0.2, 0.4, 0.05]
    return np.array(ACQUISITION_CHANNELS, dtype=object)[_choice(rng, p)]
