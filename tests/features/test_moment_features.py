"""Moment features on hand-built histories, at the boundaries of every rule.

Each customer is steady (long tenure, one product, five logins and 5,000 of assets every
month, April-September 2026) except for what the case changes; the expected value is
worked out by hand from the thresholds of the shipped ``core/moments.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.moments import MomentsConfig, load_moments
from features.pointintime import compute_features
from tests.support.tables import activity, customer, holding, make_tables, month_ends

AS_OF = date(2026, 9, 30)
MONTHS = [m.date() for m in month_ends(date(2026, 4, 1), 6)]  # April .. September
OCT = date(2026, 10, 31)


def steady(
    cid: str,
    *,
    balances: Sequence[float | None] | None = None,
    logins: Sequence[int | None] | None = None,
    active: Sequence[bool | None] | None = None,
    products: Sequence[Sequence[str]] | None = None,
    **master: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One customer's master row, holdings and behaviour over April-September."""
    balances = balances or [5000.0] * 6
    logins = logins or [5] * 6
    active = active or [None] * 6
    products = products or [("current_account",)] * 6
    master.setdefault("joined_on", date(2015, 1, 1))
    rows = [holding(cid, m, *held) for m, held in zip(MONTHS, products, strict=True)]
    acts = [
        activity(cid, m, logins=n, balance=b, active=a)
        for m, n, b, a in zip(MONTHS, logins, balances, active, strict=True)
    ]
    return customer(cid, **master), rows, acts


def features_of(catalogue: Catalogue, *people: tuple, extra_holdings: list | None = None):
    customers = [p[0] for p in people]
    holdings = [r for p in people for r in p[1]] + (extra_holdings or [])
    behaviour = [r for p in people for r in p[2]]
    tables = make_tables([p.id for p in catalogue.holdable], customers, holdings, behaviour)
    return compute_features(tables, AS_OF, catalogue)


def _flat(last: float) -> list[float]:
    return [last] * 6


def test_tier_boundaries_use_the_assets_known_at_as_of(catalogue: Catalogue) -> None:
    frame = features_of(
        catalogue,
        steady("just_mass", balances=_flat(99_999.99), tier="private"),
        steady("just_affluent", balances=_flat(100_000.0)),
        steady("top_affluent", balances=_flat(999_999.99)),
        steady("just_private", balances=_flat(1_000_000.0)),
        # September's balance is unknown: the latest known one (August) decides.
        steady("gap", balances=[5.0, 5.0, 5.0, 5.0, 200_000.0, None]),
        steady("no_balance", balances=[None] * 6, tier="affluent"),
    )
    assert frame["tier"].to_dict() == {
        "just_mass": "mass", "just_affluent": "affluent", "top_affluent": "affluent",
        "just_private": "private", "gap": "affluent", "no_balance": "affluent",
    }  # fmt: skip


def test_a_balance_after_as_of_does_not_change_the_tier(catalogue: Catalogue) -> None:
    person = steady("riser", balances=_flat(50_000.0), tier="private")
    later = activity("riser", OCT, logins=5, balance=2_000_000.0)
    frame = features_of(catalogue, (person[0], person[1], [*person[2], later]))
    assert frame.loc["riser", "tier"] == "mass"


def test_growth_figures_and_the_upgrade_rule(catalogue: Catalogue) -> None:
    frame = features_of(
        catalogue,
        # +21% in each of the last three months: a candidate.
        steady("up3", balances=[10_000, 10_000, 10_000, 12_100, 14_641, 17_715.61]),
        # +20% exactly each month: not more than 20%, not a candidate.
        steady("exact20", balances=[10_000, 10_000, 10_000, 12_000, 14_400, 17_280]),
        # +21% in two months only (+10% before): not a candidate.
        steady("two", balances=[10_000, 10_000, 10_000, 11_000, 13_310, 16_105.1]),
        # +21% three times but affluent by now: not a (mass) candidate.
        steady("affluent", balances=[60_000, 60_000, 60_000, 72_600, 87_846, 106_293.66]),
        # Only three months of balances: the third growth figure is unknown.
        steady("short", balances=[None, None, None, 12_100, 14_641, 17_715.61]),
    )
    up3 = frame.loc["up3"]
    assert [up3[f"aum_growth_m{k}"] for k in (1, 2, 3)] == pytest.approx([0.21] * 3)
    assert [frame.loc["exact20", f"aum_growth_m{k}"] for k in (1, 2, 3)] == [0.2] * 3
    assert frame.loc["two", "aum_growth_m3"] == pytest.approx(0.10)
    assert pd.isna(frame.loc["short", "aum_growth_m3"])
    assert frame.loc["short", "aum_growth_m2"] == pytest.approx(0.21)
    assert frame.loc["affluent", "tier"] == "affluent"
    assert frame["upgrade_candidate"].to_dict() == {
        "up3": True, "exact20": False, "two": False, "affluent": False, "short": False
    }  # fmt: skip


def test_the_upgrade_rule_follows_the_config(catalogue: Catalogue) -> None:
    """+20% in each of two months: a candidate under "more than 19% in each of the last 2
    months", not under the shipped "more than 20% in each of the last 3"."""
    shipped = load_moments()
    config = MomentsConfig.model_validate(
        shipped.model_dump() | {"upgrade": {"min_growth": 0.19, "months": 2}}
    )
    person = steady("two", balances=[10_000, 10_000, 10_000, 11_000, 13_200, 15_840])
    tables = make_tables([p.id for p in catalogue.holdable], [person[0]], person[1], person[2])
    assert bool(compute_features(tables, AS_OF, catalogue, config).loc["two", "upgrade_candidate"])
    assert not compute_features(tables, AS_OF, catalogue).loc["two", "upgrade_candidate"]


def _stages(frame: pd.DataFrame) -> dict[str, str]:
    return {str(k): str(v) for k, v in frame["lifecycle_stage"].items()}


def test_lifecycle_stage_boundaries(catalogue: Catalogue) -> None:
    nothing: list[tuple[str, ...]] = [("current_account",)] * 5 + [()]
    dropped_two = [("current_account", "funds", "credit_card")] * 4 + [("current_account",)] * 2
    dropped_one = [("current_account", "funds")] * 4 + [("current_account",)] * 2
    added_one = [("current_account",)] * 4 + [("current_account", "funds")] * 2
    old = date(2025, 8, 31)  # one older snapshot, for the customers who left long ago
    people = [
        steady("left_recently", left_on=date(2026, 9, 15)),
        steady("mature"),
        steady("prospect", products=nothing),
        steady("dormant_3", logins=[5, 5, 5, 0, 0, 0]),
        steady("at_risk_2_idle", logins=[5, 5, 5, 5, 0, 0]),
        steady("idle_1", logins=[5, 5, 5, 5, 5, 0]),
        steady("dormant_inactive", logins=[None] * 6, active=[True, True, True] + [False] * 3),
        steady("at_risk_drop30", balances=[5000, 5000, 10_000, 9000, 8000, 7000]),
        steady("drop29", balances=[5000, 5000, 10_000, 9000, 8000, 7100]),
        steady("at_risk_dropped2", products=dropped_two),
        steady("dropped1", products=dropped_one),
        steady("new_5m", joined_on=date(2026, 4, 1)),
        steady("tenure_6m", joined_on=date(2026, 3, 30)),
        steady("growing_10", balances=[5000, 5000, 10_000, 10_300, 10_600, 11_000]),
        steady("up_9", balances=[5000, 5000, 10_000, 10_300, 10_600, 10_900]),
        steady("growing_added", products=added_one),
        (customer("left_12m", left_on=date(2025, 9, 30)), [holding("left_12m", old, "funds")], []),
        (customer("left_13m", left_on=date(2025, 8, 30)), [holding("left_13m", old, "funds")], []),
    ]
    stages = _stages(features_of(catalogue, *people))
    assert stages == {
        "left_recently": "churned",
        "left_12m": "churned",  # 12 whole months ago: inside the 12-month win-back window
        "mature": "mature",
        "prospect": "prospect",
        "dormant_3": "dormant",
        "at_risk_2_idle": "at_risk",
        "idle_1": "mature",
        "dormant_inactive": "dormant",  # no login counts known: the active flag decides
        "at_risk_drop30": "at_risk",  # -30% exactly is a drop of at least 30%
        "drop29": "mature",
        "at_risk_dropped2": "at_risk",
        "dropped1": "mature",
        "new_5m": "new",
        "tenure_6m": "mature",
        "growing_10": "growing",  # +10% exactly over 3 months
        "up_9": "mature",
        "growing_added": "growing",
    }  # left_13m: 13 months ago, outside the window: not in the feature set at all


def test_birth_month(catalogue: Catalogue) -> None:
    frame = features_of(
        catalogue,
        steady("known", birth_date=date(1980, 10, 15)),
        steady("unknown"),
        steady("estimated", birth_date=date(1980, 5, 28), birth_date_estimated=True),
    )
    assert frame.loc["known", "birth_month"] == 10
    assert pd.isna(frame.loc["unknown", "birth_month"])
    assert pd.isna(frame.loc["estimated", "birth_month"])
