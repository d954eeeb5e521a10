"""How the moment features are computed: tier, asset growth, upgrade flag, lifecycle stage,
birth month and departure, each as of the feature date.

Each function takes a :class:`~features.pointintime.PointInTimeContext` (which already holds
only what was known at ``as_of``) and returns a series indexed like ``ctx.index``;
``features.definitions`` names and types them. Thresholds come from ``ctx.moments``
(``core/moments.yaml``); the stage rules and their order are documented in docs/moments.md.
Why here and not in the master table: tier and stage change over time, so they are derived
from dated rows at ``as_of``, never read from a snapshot taken later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.moments import MAX_GROWTH_MONTHS
from features import behaviour_features, holdings_features, profile_features
from features.window_stats import relative, trailing_run

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

TIER_NAMES = np.array(["mass", "affluent", "private"], dtype=object)


def _last_known(window: np.ndarray) -> np.ndarray:
    """Per column (customer), the latest non-NaN value of a ``(month, customer)`` window."""
    known = ~np.isnan(window)
    if window.shape[0] == 0:
        return np.full(window.shape[1], np.nan)
    latest = window.shape[0] - 1 - np.argmax(known[::-1], axis=0)
    values = window[latest, np.arange(window.shape[1])]
    return np.where(known.any(axis=0), values, np.nan)


def known_assets(ctx: PointInTimeContext) -> np.ndarray:
    """The latest balance known at ``as_of`` within the lookback (NaN where none is)."""
    return _last_known(ctx.behaviour["balance"])


def tier(ctx: PointInTimeContext) -> pd.Series:
    """Tier from the assets known at ``as_of``; the master tier where no balance is known
    (a bank that publishes no balances, e.g. Santander)."""
    assets = known_assets(ctx)
    thresholds = ctx.moments.tiers
    position = np.searchsorted(
        [thresholds.affluent_from, thresholds.private_from], np.nan_to_num(assets), side="right"
    )
    master = ctx.customers["tier"].to_numpy(dtype=object) if "tier" in ctx.customers else None
    fallback = master if master is not None else np.full(ctx.size, None, dtype=object)
    return ctx.series(np.where(np.isnan(assets), fallback, TIER_NAMES[position]))


def aum_growth(back: int) -> Callable[[PointInTimeContext], pd.Series]:
    """Relative balance growth of the month ``back`` months before the latest (0 = latest):
    ``(b[t-back] - b[t-back-1]) / b[t-back-1]``; NaN when either balance is unknown or the
    earlier one is not positive."""

    def compute(ctx: PointInTimeContext) -> pd.Series:
        now = ctx.behaviour_at("balance", back)
        before = ctx.behaviour_at("balance", back + 1)
        return ctx.series(relative(now - before, before))

    return compute


def upgrade_candidate(ctx: PointInTimeContext) -> pd.Series:
    """Mass tier and growth above ``upgrade.min_growth`` (strictly) in each of the last
    ``upgrade.months`` months; an unknown month is not growth."""
    rule = ctx.moments.upgrade
    months = min(rule.months, MAX_GROWTH_MONTHS)
    grew = np.ones(ctx.size, dtype=bool)
    for back in range(months):
        growth = aum_growth(back)(ctx).to_numpy(dtype=float)
        grew &= np.nan_to_num(growth, nan=-np.inf) > rule.min_growth
    return ctx.series(grew & (tier(ctx).to_numpy(dtype=object) == "mass"))


def _left_months(ctx: PointInTimeContext) -> np.ndarray:
    left = ctx.customers["left_on"]
    months = profile_features.whole_months_between(left, ctx.as_of)
    return np.where((left <= ctx.as_of).to_numpy(), months, np.nan)


def departed(ctx: PointInTimeContext) -> pd.Series:
    """True for a customer who left on or before ``as_of`` (kept for win-back)."""
    return ctx.series(~np.isnan(_left_months(ctx)))


def months_since_left(ctx: PointInTimeContext) -> pd.Series:
    """Whole months since the customer left (null while still a customer)."""
    return ctx.series(_left_months(ctx))


def birth_month(ctx: PointInTimeContext) -> pd.Series:
    """Month of birth 1..12; null when the birth date is unknown or only estimated from a
    published age (``birth_date_estimated``: its month is not the customer's)."""
    months = ctx.customers["birth_date"].dt.month.to_numpy(dtype=float, na_value=np.nan)
    if "birth_date_estimated" in ctx.customers:
        estimated = ctx.customers["birth_date_estimated"].astype("boolean").fillna(False)
        months = np.where(estimated.to_numpy(dtype=bool), np.nan, months)
    return ctx.series(months)


def inactive_run(ctx: PointInTimeContext) -> np.ndarray:
    """Trailing months (latest first) in which the customer was inactive: no login where
    logins are known, else the active flag false; a month with neither known ends the run."""
    logins = ctx.behaviour["logins"]
    active = ctx.behaviour["active"]
    inactive = np.where(~np.isnan(logins), logins == 0, ~np.isnan(active) & (active == 0))
    return trailing_run(inactive)


def lifecycle_stage(ctx: PointInTimeContext) -> pd.Series:
    """The first stage whose rule holds, in the order of docs/moments.md:
    churned, prospect, dormant, at_risk, new, growing, mature."""
    rules = ctx.moments.lifecycle

    def values(compute: Callable[[PointInTimeContext], pd.Series]) -> np.ndarray:
        return compute(ctx).to_numpy(dtype=float, na_value=np.nan)

    idle = inactive_run(ctx)
    change_3m = values(behaviour_features.balance_change(3))
    dropped_3m = values(holdings_features.changes_3m("dropped"))
    added_3m = values(holdings_features.changes_3m("added"))
    tenure = values(profile_features.tenure_months)
    holds_nothing = ~ctx.held_now.any(axis=0)
    conditions = [
        departed(ctx).to_numpy(dtype=bool),
        holds_nothing,
        idle >= rules.dormant_months_inactive,
        (idle >= rules.at_risk_months_without_login)
        | (change_3m <= -rules.at_risk_asset_drop_3m)
        | (dropped_3m >= rules.at_risk_products_dropped_3m),
        tenure < rules.new_max_tenure_months,
        (change_3m >= rules.growing_min_aum_growth_3m)
        | (added_3m >= rules.growing_min_products_added_3m),
    ]
    choices = ["churned", "prospect", "dormant", "at_risk", "new", "growing"]
    return ctx.series(np.select(conditions, choices, default="mature").astype(object))
