"""Every feature of the service, defined once and used by training and serving alike.

A :class:`FeatureDef` names a feature, its type and how to compute it from a
:class:`~features.pointintime.PointInTimeContext` (which already holds only what was known
at ``as_of``). Unknown inputs give null, never an error: the Santander data has no logins
or balances, so every behaviour feature is null there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from core.catalogue import Catalogue

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

FeatureType = Literal["float", "int", "bool", "str", "date", "str_list"]

PANDAS_DTYPES: dict[str, str] = {
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "str": "object",
    "date": "datetime64[ns]",
    "str_list": "object",
}

MONTHS_SINCE_LOGIN_CAP = 12
"""``months_since_login`` stops counting here ("a year or more")."""

PATTERN_LAGS = 5
"""``held_pattern__*`` packs whether the product was held 1..5 snapshots back."""


@dataclass(frozen=True)
class FeatureDef:
    """One named feature: ``compute`` returns a series indexed like ``ctx.index``."""

    name: str
    dtype: FeatureType
    description: str
    compute: Callable[[PointInTimeContext], pd.Series]


# --- helpers -------------------------------------------------------------------------------


def _mean(window: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN; NaN where a column has no known value (no warnings)."""
    known = ~np.isnan(window)
    count = known.sum(axis=0)
    total = np.where(known, window, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _sum(window: np.ndarray) -> np.ndarray:
    """Column sums ignoring NaN; NaN where a column has no known value."""
    known = ~np.isnan(window)
    total = np.where(known, window, 0.0).sum(axis=0)
    return np.where(known.any(axis=0), total, np.nan)


def _relative(change: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``change / base`` where the base is known and positive, else NaN."""
    ok = ~np.isnan(change) & ~np.isnan(base) & (base > 0)
    return np.divide(change, base, out=np.full(change.shape, np.nan), where=ok)


def _trailing_run(flags: np.ndarray) -> np.ndarray:
    """Per column, how many rows at the end (the latest months) are all True."""
    run = np.zeros(flags.shape[1], dtype=np.int64)
    alive = np.ones(flags.shape[1], dtype=bool)
    for row in flags[::-1]:
        alive &= row
        run += alive
    return run


# --- profile -------------------------------------------------------------------------------


def _master(column: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        if column not in ctx.customers.columns:  # an optional master column the bank lacks
            return ctx.series(np.full(ctx.size, None, dtype=object))
        return ctx.series(ctx.customers[column])

    return compute


def _age(ctx: PointInTimeContext) -> pd.Series:
    birth = ctx.customers["birth_date"]
    before_birthday = (birth.dt.month > ctx.as_of.month) | (
        (birth.dt.month == ctx.as_of.month) & (birth.dt.day > ctx.as_of.day)
    )
    age = (ctx.as_of.year - birth.dt.year - before_birthday.astype(float)).to_numpy()
    return ctx.series(np.where(age >= 0, age, np.nan))


def _tenure_months(ctx: PointInTimeContext) -> pd.Series:
    joined = ctx.customers["joined_on"]
    months = (
        (ctx.as_of.year - joined.dt.year) * 12
        + (ctx.as_of.month - joined.dt.month)
        - (joined.dt.day > ctx.as_of.day).astype(float)
    ).to_numpy()
    return ctx.series(np.where(months >= 0, months, np.nan))


def _assessment_known(ctx: PointInTimeContext) -> np.ndarray:
    """False where the risk assessment is dated after ``as_of``: it did not exist yet."""
    assessed = ctx.customers["risk_assessed_on"]
    return (assessed.isna() | (assessed <= ctx.as_of)).to_numpy()


def _risk_level(ctx: PointInTimeContext) -> pd.Series:
    level = pd.to_numeric(ctx.customers["risk_level"], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    valid = _assessment_known(ctx) & (level >= 1) & (level <= 5)
    return ctx.series(np.where(valid, level, np.nan))


def _risk_assessed_on(ctx: PointInTimeContext) -> pd.Series:
    assessed = ctx.customers["risk_assessed_on"]
    return ctx.series(assessed.where(_assessment_known(ctx)))


# --- holdings ------------------------------------------------------------------------------


def _basket_codes(held: np.ndarray) -> np.ndarray:
    """One integer code per customer for the set of products held (``held``: product x customer).

    Bits are packed 62 products per word; with more than one word the rows are codes too.
    """
    words = []
    for start in range(0, held.shape[0], 62):
        part = held[start : start + 62].astype(np.int64)
        weights = np.left_shift(np.int64(1), np.arange(part.shape[0], dtype=np.int64))
        words.append(weights @ part)
    if len(words) == 1:
        return pd.factorize(words[0])[0]
    return np.unique(np.stack(words, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _held(ctx: PointInTimeContext) -> pd.Series:
    """Product ids held now, in catalogue order; one shared tuple per distinct basket."""
    held = ctx.held_now
    codes = _basket_codes(held)
    first = pd.Series(np.arange(ctx.size)).groupby(codes).first().to_numpy()
    ids = np.array(ctx.product_ids, dtype=object)
    baskets = np.empty(len(first), dtype=object)
    for code, customer in enumerate(first):
        baskets[code] = tuple(ids[held[:, customer]].tolist())
    return ctx.series(baskets[codes])


def _n_products(ctx: PointInTimeContext) -> pd.Series:
    return ctx.series(ctx.held_now.sum(axis=0))


def _changes_3m(
    direction: Literal["added", "dropped"],
) -> Callable[[PointInTimeContext], pd.Series]:
    """Products added (or dropped) over the last three month-to-month transitions.

    Null when there is no earlier snapshot to compare with.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        window = ctx.holdings[:, -4:, :]
        if window.shape[1] < 2:
            return ctx.nulls()
        before, after = window[:, :-1, :], window[:, 1:, :]
        moved = (after & ~before) if direction == "added" else (before & ~after)
        return ctx.series(moved.sum(axis=(0, 1)))

    return compute


def _held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(ctx.held_now[ctx.product_position(product_id)].astype(np.int8))

    return compute


def _held_prev_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        previous = ctx.held_at(1)
        if previous is None:
            return ctx.nulls()
        return ctx.series(previous[ctx.product_position(product_id)].astype(np.int8))

    return compute


def _months_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(_trailing_run(ctx.holdings[ctx.product_position(product_id)]))

    return compute


def _dropped_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        history = ctx.holdings[ctx.product_position(product_id)]
        dropped = history[:-1].any(axis=0) & ~history[-1]
        return ctx.series(dropped.astype(np.int8))

    return compute


def _months_since_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Snapshots since the product was last held (0 = held now); null if not in the lookback.

    The re-add signal: a payroll or a direct debit that stopped two months ago comes back
    far more often than one never held.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        history = ctx.holdings[ctx.product_position(product_id)]
        since = np.argmax(history[::-1], axis=0).astype(float)
        return ctx.series(np.where(history.any(axis=0), since, np.nan))

    return compute


def _times_held_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(ctx.holdings[ctx.product_position(product_id)].sum(axis=0))

    return compute


def _adds_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Times the product went from not held to held within the lookback; null with one
    snapshot (no transition to count)."""

    def compute(ctx: PointInTimeContext) -> pd.Series:
        history = ctx.holdings[ctx.product_position(product_id)]
        if history.shape[0] < 2:
            return ctx.nulls()
        return ctx.series((history[1:] & ~history[:-1]).sum(axis=0))

    return compute


def _held_pattern_product(product_id: str) -> Callable[[PointInTimeContext], pd.Series]:
    """Holdings 1..``PATTERN_LAGS`` snapshots back as one binary number, the most recent
    lag as the most significant bit (16 = held last snapshot, 8 = two back, ...).

    One column instead of five: a tree's threshold on it splits on the most recent lags
    first, which is the order in which they matter. Snapshots before the lookback count
    as not held.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        pattern = np.zeros(ctx.size, dtype=np.int64)
        position = ctx.product_position(product_id)
        for back in range(1, PATTERN_LAGS + 1):
            held = ctx.held_at(back)
            if held is not None:
                pattern += held[position].astype(np.int64) << (PATTERN_LAGS - back)
        return ctx.series(pattern)

    return compute


def _changes_1m(
    direction: Literal["added", "dropped"],
) -> Callable[[PointInTimeContext], pd.Series]:
    """Products added (or dropped) at the latest transition; null with one snapshot."""

    def compute(ctx: PointInTimeContext) -> pd.Series:
        previous = ctx.held_at(1)
        if previous is None:
            return ctx.nulls()
        now = ctx.held_now
        moved = (now & ~previous) if direction == "added" else (previous & ~now)
        return ctx.series(moved.sum(axis=0))

    return compute


# --- behaviour -----------------------------------------------------------------------------


def _latest(column: str) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        return ctx.series(ctx.behaviour_at(column, 0))

    return compute


def _logins_3m_avg(ctx: PointInTimeContext) -> pd.Series:
    return ctx.series(_mean(ctx.behaviour_window("logins", 3)))


def _login_trend(ctx: PointInTimeContext) -> pd.Series:
    recent = _mean(ctx.behaviour_window("logins", 3))
    prior = _mean(ctx.behaviour_window("logins", 3, skip=3))
    return ctx.series(recent - prior)


def _months_since_login(ctx: PointInTimeContext) -> pd.Series:
    """Trailing months without a login (unknown months count as none), capped.

    Null when no login count is known for the customer at all.
    """
    logins = ctx.behaviour_window("logins", MONTHS_SINCE_LOGIN_CAP)
    idle = _trailing_run(~(logins > 0)).astype(float)
    known = (~np.isnan(logins)).any(axis=0)
    return ctx.series(np.where(known, np.minimum(idle, MONTHS_SINCE_LOGIN_CAP), np.nan))


def _balance_change(months: int) -> Callable[[PointInTimeContext], pd.Series]:
    def compute(ctx: PointInTimeContext) -> pd.Series:
        now = ctx.behaviour_at("balance", 0)
        then = ctx.behaviour_at("balance", months)
        return ctx.series(_relative(now - then, then))

    return compute


def _net_flow(months: int) -> Callable[[PointInTimeContext], pd.Series]:
    """Inflow minus outflow over the window, relative to the window's average balance.

    The average rather than the latest balance: the latest is itself moved by the flow,
    and the average exists for customers who joined within the window.
    """

    def compute(ctx: PointInTimeContext) -> pd.Series:
        flow = _sum(
            ctx.behaviour_window("inflow", months) - ctx.behaviour_window("outflow", months)
        )
        return ctx.series(_relative(flow, _mean(ctx.behaviour_window("balance", months))))

    return compute


# --- the list ------------------------------------------------------------------------------


def _profile() -> list[FeatureDef]:
    return [
        FeatureDef("age", "int", "Age in whole years at as_of (null if unknown).", _age),
        FeatureDef("tenure_months", "int", "Whole months since joining.", _tenure_months),
        FeatureDef("tier", "str", "mass / affluent / private.", _master("tier")),
        FeatureDef("segment", "str", "Needs segment.", _master("segment")),
        FeatureDef("income", "float", "Annual gross household income.", _master("income")),
        FeatureDef("resident", "bool", "Resident of the bank's country.", _master("resident")),
        FeatureDef("employee", "bool", "Employee of the bank.", _master("employee")),
        FeatureDef(
            "preferred_channel",
            "str",
            "Channel the customer responds on.",
            _master("preferred_channel"),
        ),
        FeatureDef("region", "str", "Region (province) of residence.", _master("region")),
        FeatureDef(
            "acquisition_channel",
            "str",
            "Channel the customer joined through (null if unknown).",
            _master("acquisition_channel"),
        ),
        FeatureDef(
            "risk_level", "int", "Investor level 1-5; null if assessed after as_of.", _risk_level
        ),
        FeatureDef(
            "risk_assessed_on",
            "date",
            "Date of the risk assessment; null if after as_of.",
            _risk_assessed_on,
        ),
    ]


def _holdings(catalogue: Catalogue) -> list[FeatureDef]:
    features = [
        FeatureDef("held", "str_list", "Product ids held at the latest snapshot.", _held),
        FeatureDef("n_products", "int", "Number of products held.", _n_products),
        FeatureDef(
            "products_added_3m",
            "int",
            "Products added over the last 3 months.",
            _changes_3m("added"),
        ),
        FeatureDef(
            "products_dropped_3m",
            "int",
            "Products given up over the last 3 months.",
            _changes_3m("dropped"),
        ),
        FeatureDef(
            "products_added_1m",
            "int",
            "Products added at the latest snapshot.",
            _changes_1m("added"),
        ),
        FeatureDef(
            "products_dropped_1m",
            "int",
            "Products given up at the latest snapshot.",
            _changes_1m("dropped"),
        ),
    ]
    for product in catalogue.holdable:
        pid = product.id
        features += [
            FeatureDef(f"held__{pid}", "int", f"Holds {pid} now (0/1).", _held_product(pid)),
            FeatureDef(
                f"held_prev__{pid}",
                "int",
                f"Held {pid} at the previous snapshot (0/1).",
                _held_prev_product(pid),
            ),
            FeatureDef(
                f"months_held__{pid}",
                "int",
                f"Consecutive snapshots up to now holding {pid} (lookback-capped).",
                _months_held_product(pid),
            ),
            FeatureDef(
                f"dropped__{pid}",
                "int",
                f"Held {pid} earlier in the lookback, not now (0/1).",
                _dropped_product(pid),
            ),
            FeatureDef(
                f"months_since_held__{pid}",
                "int",
                f"Snapshots since {pid} was last held (0 = now; null if not in the lookback).",
                _months_since_held_product(pid),
            ),
            FeatureDef(
                f"times_held__{pid}",
                "int",
                f"Snapshots in the lookback holding {pid}.",
                _times_held_product(pid),
            ),
            FeatureDef(
                f"adds__{pid}",
                "int",
                f"Times {pid} was added within the lookback.",
                _adds_product(pid),
            ),
            FeatureDef(
                f"held_pattern__{pid}",
                "int",
                f"Held {pid} 1..{PATTERN_LAGS} snapshots back, as bits (16 = last snapshot).",
                _held_pattern_product(pid),
            ),
        ]
    return features


def _behaviour() -> list[FeatureDef]:
    return [
        FeatureDef("logins_1m", "int", "Logins in the latest month.", _latest("logins")),
        FeatureDef(
            "logins_3m_avg", "float", "Average monthly logins, last 3 months.", _logins_3m_avg
        ),
        FeatureDef(
            "months_since_login",
            "int",
            f"Trailing months without a login (capped at {MONTHS_SINCE_LOGIN_CAP}).",
            _months_since_login,
        ),
        FeatureDef(
            "login_trend", "float", "Logins: last 3 months avg minus prior 3.", _login_trend
        ),
        FeatureDef(
            "balance", "float", "Assets under management at the latest month.", _latest("balance")
        ),
        FeatureDef(
            "balance_change_1m",
            "float",
            "Relative balance change over 1 month.",
            _balance_change(1),
        ),
        FeatureDef(
            "balance_change_3m",
            "float",
            "Relative balance change over 3 months.",
            _balance_change(3),
        ),
        FeatureDef(
            "net_flow_1m", "float", "Inflow minus outflow, last month, per balance.", _net_flow(1)
        ),
        FeatureDef(
            "net_flow_3m",
            "float",
            "Inflow minus outflow, last 3 months, per balance.",
            _net_flow(3),
        ),
        FeatureDef("active", "bool", "Active flag at the latest month.", _latest("active")),
    ]


def feature_definitions(catalogue: Catalogue) -> list[FeatureDef]:
    """All features in fixed order: profile, holdings (per product, catalogue order), behaviour."""
    return [*_profile(), *_holdings(catalogue), *_behaviour()]
