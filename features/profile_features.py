"""How the profile features are computed: master data as known at ``as_of``.

Each function takes a :class:`~features.pointintime.PointInTimeContext` and returns a
series indexed like ``ctx.index``; ``features.definitions`` names and types them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext


def master(column: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        if column not in ctx.customers.columns:  # an optional master column the bank lacks
            return ctx.series(np.full(ctx.size, None, dtype=object))
        return ctx.series(ctx.customers[column])

    return compute


def age(ctx: PointInTimeContext) -> pd.Series:
    birth = ctx.customers["birth_date"]
    before_birthday = (birth.dt.month > ctx.as_of.month) | (
        (birth.dt.month == ctx.as_of.month) & (birth.dt.day > ctx.as_of.day)
    )
    age = (ctx.as_of.year - birth.dt.year - before_birthday.astype(float)).to_numpy()
    return ctx.series(np.where(age >= 0, age, np.nan))


def whole_months_between(start: pd.Series, end: pd.Timestamp) -> np.ndarray:
    """Whole calendar months from each ``start`` to ``end`` (NaN where ``start`` is unknown);
    a month counts once its day is reached (15 Sep -> 15 Oct is 1, -> 14 Oct is 0)."""
    months = (
        (end.year - start.dt.year) * 12
        + (end.month - start.dt.month)
        - (start.dt.day > end.day).astype(float)
    )
    return months.to_numpy(dtype=float, na_value=np.nan)


def tenure_months(ctx: PointInTimeContext) -> pd.Series:
    months = whole_months_between(ctx.customers["joined_on"], ctx.as_of)
    return ctx.series(np.where(months >= 0, months, np.nan))


def _assessment_known(ctx: PointInTimeContext) -> np.ndarray:
    """False where the risk assessment is dated after ``as_of``: it did not exist yet."""
    assessed = ctx.customers["risk_assessed_on"]
    return (assessed.isna() | (assessed <= ctx.as_of)).to_numpy()


def risk_level(ctx: PointInTimeContext) -> pd.Series:
    level = pd.to_numeric(ctx.customers["risk_level"], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    valid = _assessment_known(ctx) & (level >= 1) & (level <= 5)
    return ctx.series(np.where(valid, level, np.nan))


def risk_assessed_on(ctx: PointInTimeContext) -> pd.Series:
    assessed = ctx.customers["risk_assessed_on"]
    return ctx.series(assessed.where(_assessment_known(ctx)))
