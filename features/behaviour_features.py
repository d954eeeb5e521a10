"""How the behaviour features are computed: logins, balance and money flows by month.

Each function takes a :class:`~features.pointintime.PointInTimeContext` and returns a
series indexed like ``ctx.index``; ``features.definitions`` names and types them. The
Santander data has no logins or balances, so every one of them is null there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.window_stats import nan_mean, nan_sum, relative, trailing_run

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

MONTHS_SINCE_LOGIN_CAP = 12
"""``months_since_login`` stops counting here ("a year or more")."""


def latest(column: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(ctx.behaviour_at(column, 0))

    return compute


def logins_3m_avg(ctx: PointInTimeContext) -> pd.Series:
    return ctx.series(nan_mean(ctx.behaviour_window("logins", 3)))


def login_trend(ctx: PointInTimeContext) -> pd.Series:
    recent = nan_mean(ctx.behaviour_window("logins", 3))
    prior = nan_mean(ctx.behaviour_window("logins", 3, skip=3))
    return ctx.series(recent - prior)


def months_since_login(ctx: PointInTimeContext) -> pd.Series:
    """Trailing months without a login (unknown months count as none), capped.

    Null when no login count is known for the customer at all.
    """
    logins = ctx.behaviour_window("logins", MONTHS_SINCE_LOGIN_CAP)
    idle = trailing_run(~(logins > 0)).astype(float)
    known = (~np.isnan(logins)).any(axis=0)
    return ctx.series(np.where(known, np.minimum(idle, MONTHS_SINCE_LOGIN_CAP), np.nan))


def balance_change(months: int) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        now = ctx.behaviour_at("balance", 0)
        then = ctx.behaviour_at("balance", months)
        return ctx.series(relative(now - then, then))

    return compute


def net_flow(months: int) -> Callable[[PointInTimeContext], pd.Series]:
    """Inflow minus outflow over the window, relative to the window's average balance.

    The average rather than the latest balance: the latest is itself moved by the flow,
    and the average exists for customers who joined within the window.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        flow = nan_sum(
            ctx.behaviour_window("inflow", months) - ctx.behaviour_window("outflow", months)
        )
        return ctx.series(relative(flow, nan_mean(ctx.behaviour_window("balance", months))))

    return compute
