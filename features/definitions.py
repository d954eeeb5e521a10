"""Every feature of the service, defined once and used by training and serving alike.

A :class:`FeatureDef` names a feature, its type and how to compute it from a
:class:`~features.pointintime.PointInTimeContext` (which already holds only what was known
at ``as_of``). Unknown inputs give null, never an error: the Santander data has no logins
or balances, so every behaviour feature is null there. The computations live with their
group: ``features.profile_features``, ``features.holdings_features``,
``features.behaviour_features`` and ``features.moment_features``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from core.catalogue import Catalogue
from features import behaviour_features as behaviour
from features import contract_features as contracts
from features import holdings_features as holdings
from features import moment_features as moments
from features import profile_features as profile

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

FeatureType = Literal["float", "int", "bool", "str", "date", "str_list", "json"]

PANDAS_DTYPES: dict[str, str] = {
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "str": "object",
    "date": "datetime64[ns]",
    "str_list": "object",
    "json": "object",  # a JSON value per customer (lists and objects), e.g. ``maturities``
}


@dataclass(frozen=True)
class FeatureDef:
    """One named feature: ``compute`` returns a series indexed like ``ctx.index``."""

    name: str
    dtype: FeatureType
    description: str
    compute: Callable[[PointInTimeContext], pd.Series]


def _profile() -> list[FeatureDef]:
    return [
        FeatureDef("age", "int", "Age in whole years at as_of (null if unknown).", profile.age),
        FeatureDef("tenure_months", "int", "Whole months since joining.", profile.tenure_months),
        FeatureDef(
            "tier",
            "str",
            "mass / affluent / private from the assets known at as_of (core/moments.yaml); "
            "the master tier where no balance is known.",
            moments.tier,
        ),
        FeatureDef("segment", "str", "Needs segment.", profile.master("segment")),
        FeatureDef("income", "float", "Annual gross household income.", profile.master("income")),
        FeatureDef(
            "resident", "bool", "Resident of the bank's country.", profile.master("resident")
        ),
        FeatureDef("employee", "bool", "Employee of the bank.", profile.master("employee")),
        FeatureDef(
            "preferred_channel",
            "str",
            "Channel the customer responds on.",
            profile.master("preferred_channel"),
        ),
        FeatureDef("region", "str", "Region (province) of residence.", profile.master("region")),
        FeatureDef(
            "acquisition_channel",
            "str",
            "Channel the customer joined through (null if unknown).",
            profile.master("acquisition_channel"),
        ),
        FeatureDef(
            "risk_level",
            "int",
            "Investor level 1-5; null if assessed after as_of.",
            profile.risk_level,
        ),
        FeatureDef(
            "risk_assessed_on",
            "date",
            "Date of the risk assessment; null if after as_of.",
            profile.risk_assessed_on,
        ),
    ]


def _holdings(catalogue: Catalogue) -> list[FeatureDef]:
    features = [
        FeatureDef("held", "str_list", "Product ids held at the latest snapshot.", holdings.held),
        FeatureDef("n_products", "int", "Number of products held.", holdings.n_products),
        FeatureDef(
            "products_added_3m",
            "int",
            "Products added over the last 3 months.",
            holdings.changes_3m("added"),
        ),
        FeatureDef(
            "products_dropped_3m",
            "int",
            "Products given up over the last 3 months.",
            holdings.changes_3m("dropped"),
        ),
        FeatureDef(
            "products_added_1m",
            "int",
            "Products added at the latest snapshot.",
            holdings.changes_1m("added"),
        ),
        FeatureDef(
            "products_dropped_1m",
            "int",
            "Products given up at the latest snapshot.",
            holdings.changes_1m("dropped"),
        ),
    ]
    for product in catalogue.holdable:
        pid = product.id
        features += [
            FeatureDef(
                f"held__{pid}", "int", f"Holds {pid} now (0/1).", holdings.held_product(pid)
            ),
            FeatureDef(
                f"held_prev__{pid}",
                "int",
                f"Held {pid} at the previous snapshot (0/1).",
                holdings.held_prev_product(pid),
            ),
            FeatureDef(
                f"months_held__{pid}",
                "int",
                f"Consecutive snapshots up to now holding {pid} (lookback-capped).",
                holdings.months_held_product(pid),
            ),
            FeatureDef(
                f"dropped__{pid}",
                "int",
                f"Held {pid} earlier in the lookback, not now (0/1).",
                holdings.dropped_product(pid),
            ),
            FeatureDef(
                f"months_since_held__{pid}",
                "int",
                f"Snapshots since {pid} was last held (0 = now; null if not in the lookback).",
                holdings.months_since_held_product(pid),
            ),
            FeatureDef(
                f"times_held__{pid}",
                "int",
                f"Snapshots in the lookback holding {pid}.",
                holdings.times_held_product(pid),
            ),
            FeatureDef(
                f"adds__{pid}",
                "int",
                f"Times {pid} was added within the lookback.",
                holdings.adds_product(pid),
            ),
            FeatureDef(
                f"held_pattern__{pid}",
                "int",
                f"Held {pid} 1..{holdings.PATTERN_LAGS} snapshots back, as bits"
                " (16 = last snapshot).",
                holdings.held_pattern_product(pid),
            ),
        ]
    return features


def _behaviour() -> list[FeatureDef]:
    return [
        FeatureDef("logins_1m", "int", "Logins in the latest month.", behaviour.latest("logins")),
        FeatureDef(
            "logins_3m_avg",
            "float",
            "Average monthly logins, last 3 months.",
            behaviour.logins_3m_avg,
        ),
        FeatureDef(
            "months_since_login",
            "int",
            f"Trailing months without a login (capped at {behaviour.MONTHS_SINCE_LOGIN_CAP}).",
            behaviour.months_since_login,
        ),
        FeatureDef(
            "login_trend",
            "float",
            "Logins: last 3 months avg minus prior 3.",
            behaviour.login_trend,
        ),
        FeatureDef(
            "balance",
            "float",
            "Assets under management at the latest month.",
            behaviour.latest("balance"),
        ),
        FeatureDef(
            "balance_change_1m",
            "float",
            "Relative balance change over 1 month.",
            behaviour.balance_change(1),
        ),
        FeatureDef(
            "balance_change_3m",
            "float",
            "Relative balance change over 3 months.",
            behaviour.balance_change(3),
        ),
        FeatureDef(
            "net_flow_1m",
            "float",
            "Inflow minus outflow, last month, per balance.",
            behaviour.net_flow(1),
        ),
        FeatureDef(
            "net_flow_3m",
            "float",
            "Inflow minus outflow, last 3 months, per balance.",
            behaviour.net_flow(3),
        ),
        FeatureDef(
            "active", "bool", "Active flag at the latest month.", behaviour.latest("active")
        ),
    ]


def _moments() -> list[FeatureDef]:
    growth = [
        FeatureDef(
            f"aum_growth_m{back + 1}",
            "float",
            f"Relative balance growth of the {which} (null if unknown).",
            moments.aum_growth(back),
        )
        for back, which in enumerate(
            ("latest month", "month before it", "month before that"), start=0
        )
    ]
    return [
        *growth,
        FeatureDef(
            "upgrade_candidate",
            "bool",
            "Mass tier and assets up more than the upgrade threshold in each of the last "
            "upgrade months.",
            moments.upgrade_candidate,
        ),
        FeatureDef(
            "lifecycle_stage",
            "str",
            "prospect / new / growing / mature / at_risk / dormant / churned (docs/moments.md).",
            moments.lifecycle_stage,
        ),
        FeatureDef(
            "birth_month",
            "int",
            "Month of birth 1-12 (null if unknown or estimated).",
            moments.birth_month,
        ),
        FeatureDef(
            "departed",
            "bool",
            "Left the bank on or before as_of (within the win-back window).",
            moments.departed,
        ),
        FeatureDef(
            "months_since_left",
            "int",
            "Whole months since leaving (null while a customer).",
            moments.months_since_left,
        ),
    ]


def feature_definitions(catalogue: Catalogue) -> list[FeatureDef]:
    """All features in fixed order: profile, holdings (per product, catalogue order),
    behaviour, moments, contracts."""
    maturities = FeatureDef(
        "maturities",
        "json",
        f"Contracts maturing within {contracts.MATURITY_HORIZON_DAYS} days, as known at as_of.",
        contracts.maturities,
    )
    return [*_profile(), *_holdings(catalogue), *_behaviour(), *_moments(), maturities]
