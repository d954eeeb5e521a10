"""Point-in-time features: hand-computed values, and nothing dated after ``as_of`` leaks in."""

from __future__ import annotations

from datetime import date

import numpy as np
import orjson
import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import Tables
from features.definitions import feature_definitions
from features.pointintime import compute_features, to_records
from tests.support.tables import (
    activity,
    customer,
    holding,
    make_tables,
    month_ends,
    synthetic_tables,
)

AS_OF = date(2026, 9, 30)
APR, MAY, JUN, JUL, AUG, SEP, OCT = (m.date() for m in month_ends(date(2026, 4, 1), 7))


def product_ids(catalogue: Catalogue) -> list[str]:
    return [p.id for p in catalogue.holdable]


def bank(catalogue: Catalogue, *, future: bool = True) -> Tables:
    """Five customers over April-September 2026, plus (optionally) October rows.

    ``alice``: long-standing, changes products; ``bob``: joined in August, no behaviour,
    risk assessed after as_of; ``carol``: left before as_of; ``dan``: first snapshot is in
    October; ``erin``: leaves after as_of.
    """
    customers = [
        customer(
            "alice", birth_date=date(1980, 10, 15), joined_on=date(2020, 3, 20), tier="affluent",
            segment="allocation", income=50_000.0, resident=True, employee=False,
            risk_level=3, risk_assessed_on=date(2025, 1, 10), preferred_channel="app",
        ),
        customer("bob", joined_on=date(2026, 8, 5), risk_level=5,
                 risk_assessed_on=date(2026, 10, 15)),
        customer("carol", left_on=date(2026, 9, 15)),
        customer("dan", joined_on=None),
        customer("erin", left_on=date(2026, 12, 1), birth_date=date(1990, 9, 30)),
    ]  # fmt: skip
    holdings = [
        holding("alice", APR, "current_account"),
        holding("alice", MAY, "current_account"),
        holding("alice", JUN, "current_account", "credit_card"),
        holding("alice", JUL, "current_account", "credit_card"),
        holding("alice", AUG, "current_account", "credit_card", "funds"),
        holding("alice", SEP, "current_account", "funds"),
        holding("bob", AUG, "current_account"),
        holding("bob", SEP, "current_account", "savings_account"),
        holding("carol", SEP, "current_account"),
        holding("erin", SEP, "payroll_account"),
    ]
    behaviour = [
        activity("alice", APR, logins=6, balance=1000.0, inflow=100.0, outflow=0.0),
        activity("alice", MAY, logins=3, balance=1000.0, inflow=0.0, outflow=0.0),
        activity("alice", JUN, logins=3, balance=1200.0, inflow=200.0, outflow=0.0),
        activity("alice", JUL, logins=2, balance=1000.0, inflow=0.0, outflow=0.0),
        activity("alice", AUG, logins=0, balance=1100.0, inflow=200.0, outflow=100.0),
        activity("alice", SEP, logins=0, balance=880.0, inflow=50.0, outflow=300.0,
                 active=False),
    ]  # fmt: skip
    if future:
        everything = product_ids(catalogue)
        holdings += [
            holding("alice", OCT, *everything),
            holding("bob", OCT),
            holding("dan", OCT, "mortgage"),
            holding("erin", OCT, *everything),
        ]
        behaviour += [
            activity("alice", OCT, logins=50, balance=99_999.0, inflow=1e6, outflow=0.0,
                     active=True),
            activity("bob", OCT, logins=9, balance=5.0),
        ]  # fmt: skip
    return make_tables(product_ids(catalogue), customers, holdings, behaviour)


@pytest.fixture
def features(catalogue: Catalogue) -> pd.DataFrame:
    return compute_features(bank(catalogue), AS_OF, catalogue)


def test_population_is_the_customers_of_the_bank_at_as_of(features: pd.DataFrame) -> None:
    # carol left before as_of (kept, flagged, for win-back); dan's only snapshot is after it.
    assert sorted(features.index) == ["alice", "bob", "carol", "erin"]
    assert features.index.name == "customer_id"
    assert features["departed"].to_dict() == {
        "alice": False, "bob": False, "carol": True, "erin": False
    }  # fmt: skip
    assert features.loc["carol", "months_since_left"] == 0
    assert pd.isna(features.loc["alice", "months_since_left"])


def test_a_customer_who_leaves_on_as_of_has_departed(catalogue: Catalogue) -> None:
    tables = bank(catalogue)
    tables.customers.loc[tables.customers["customer_id"] == "erin", "left_on"] = pd.Timestamp(AS_OF)
    erin = compute_features(tables, AS_OF, catalogue).loc["erin"]
    assert bool(erin["departed"]) and erin["months_since_left"] == 0
    assert erin["lifecycle_stage"] == "churned"


def test_columns_follow_the_definitions(catalogue: Catalogue, features: pd.DataFrame) -> None:
    assert list(features.columns) == [d.name for d in feature_definitions(catalogue)]
    assert "months_held__direct_debit" in features.columns


def test_profile_features_by_hand(features: pd.DataFrame) -> None:
    alice, bob, erin = (features.loc[c] for c in ("alice", "bob", "erin"))
    assert alice["age"] == 45  # 46th birthday on 15 October, after as_of
    assert erin["age"] == 36  # birthday on as_of itself counts
    assert pd.isna(bob["age"])
    assert alice["tenure_months"] == 78
    assert bob["tenure_months"] == 1
    # The master says affluent (a later snapshot); her 880 of assets at as_of make her mass.
    assert alice["tier"] == "mass" and alice["segment"] == "allocation"
    assert bob["tier"] == "mass"  # no balance known: the master tier
    assert alice["income"] == 50_000.0
    assert bool(alice["resident"]) is True
    assert alice["preferred_channel"] == "app"
    assert alice["risk_level"] == 3
    assert alice["risk_assessed_on"] == pd.Timestamp(2025, 1, 10)


def test_risk_assessment_dated_after_as_of_is_invisible(features: pd.DataFrame) -> None:
    assert pd.isna(features.loc["bob", "risk_level"])
    assert pd.isna(features.loc["bob", "risk_assessed_on"])


def test_holdings_features_by_hand(features: pd.DataFrame) -> None:
    alice = features.loc["alice"]
    assert alice["held"] == ("current_account", "funds")  # catalogue order
    assert alice["n_products"] == 2
    expected = {
        # product: (held, held_prev, months_held, dropped)
        "current_account": (1, 1, 6, 0),
        "funds": (1, 1, 2, 0),  # added in August
        "credit_card": (0, 1, 0, 1),
        "savings_account": (0, 0, 0, 0),
    }
    for pid, values in expected.items():
        got = tuple(
            alice[f"{name}__{pid}"] for name in ("held", "held_prev", "months_held", "dropped")
        )
        assert got == values, pid
    # Last three transitions: Jun->Jul nothing, Jul->Aug +funds, Aug->Sep -credit_card.
    # (credit_card was added May->Jun, outside the window.)
    assert alice["products_added_3m"] == 1
    assert alice["products_dropped_3m"] == 1


def test_new_customer_holdings(features: pd.DataFrame) -> None:
    bob = features.loc["bob"]
    assert bob["held"] == ("savings_account", "current_account")
    assert bob["months_held__current_account"] == 2
    assert bob["held_prev__savings_account"] == 0
    assert bob["held__savings_account"] == 1
    assert bob["products_added_3m"] == 2  # current account in August, savings in September
    assert bob["products_dropped_3m"] == 0


def test_behaviour_features_by_hand(features: pd.DataFrame) -> None:
    alice = features.loc["alice"]
    assert alice["logins_1m"] == 0
    assert alice["logins_3m_avg"] == pytest.approx(2 / 3)
    assert alice["months_since_login"] == 2
    assert alice["login_trend"] == pytest.approx(2 / 3 - 4)
    assert alice["balance"] == 880.0
    assert alice["balance_change_1m"] == pytest.approx((880 - 1100) / 1100)
    assert alice["balance_change_3m"] == pytest.approx((880 - 1200) / 1200)
    assert alice["net_flow_1m"] == pytest.approx(-250 / 880)
    assert alice["net_flow_3m"] == pytest.approx((0 + 100 - 250) / ((1000 + 1100 + 880) / 3))
    assert bool(alice["active"]) is False


def test_unknown_behaviour_is_null_not_an_error(features: pd.DataFrame) -> None:
    behaviour = [
        "logins_1m", "logins_3m_avg", "months_since_login", "login_trend", "balance",
        "balance_change_1m", "balance_change_3m", "net_flow_1m", "net_flow_3m", "active",
    ]  # fmt: skip
    assert features.loc["bob", behaviour].isna().all()
    assert pd.isna(features.loc["alice", "active"]) is False


def test_rows_after_as_of_change_nothing(catalogue: Catalogue, features: pd.DataFrame) -> None:
    without_future = compute_features(bank(catalogue, future=False), AS_OF, catalogue)
    pd.testing.assert_frame_equal(features, without_future)


def test_mid_month_as_of_uses_the_previous_snapshot(catalogue: Catalogue) -> None:
    frame = compute_features(bank(catalogue), date(2026, 9, 15), catalogue)
    alice = frame.loc["alice"]
    assert alice["held"] == ("current_account", "funds", "credit_card")
    assert alice["balance"] == 1100.0
    assert "carol" not in frame.index  # her only snapshot is after as_of
    assert frame.loc["bob", "tenure_months"] == 1


def test_first_snapshot_has_no_history(catalogue: Catalogue) -> None:
    frame = compute_features(bank(catalogue), APR, catalogue)
    alice = frame.loc["alice"]
    assert list(frame.index) == ["alice"]
    assert pd.isna(alice["held_prev__current_account"])
    assert pd.isna(alice["products_added_3m"])
    assert alice["months_held__current_account"] == 1
    assert pd.isna(alice["balance_change_1m"])


def test_as_of_before_the_first_snapshot_is_refused(catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="precedes every holdings snapshot"):
        compute_features(bank(catalogue), date(2026, 1, 31), catalogue)


def test_missing_product_column_is_named(catalogue: Catalogue) -> None:
    tables = bank(catalogue)
    tables.holdings = tables.holdings.drop(columns=["funds"])
    with pytest.raises(ValueError, match="funds"):
        compute_features(tables, AS_OF, catalogue)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_truncating_the_future_never_changes_features(catalogue: Catalogue, seed: int) -> None:
    """Property check on random banks: cutting every row after as_of changes nothing."""
    tables = synthetic_tables(product_ids(catalogue), customers=300, months=9, seed=seed)
    as_of = pd.Timestamp(tables.holdings["month"].unique()[seed + 3]) + pd.Timedelta(days=seed)
    truncated = Tables(
        customers=tables.customers,
        holdings=tables.holdings[tables.holdings["month"] <= as_of],
        behaviour=tables.behaviour[tables.behaviour["month"] <= as_of],
    )
    full = compute_features(tables, as_of.date(), catalogue)
    assert len(full) > 100
    pd.testing.assert_frame_equal(full, compute_features(truncated, as_of.date(), catalogue))


def test_records_are_json_ready(features: pd.DataFrame) -> None:
    records = dict(to_records(features))
    assert set(records) == {"alice", "bob", "carol", "erin"}
    alice, bob = records["alice"], records["bob"]
    assert alice["risk_assessed_on"] == "2025-01-10"
    assert alice["held"] == ["current_account", "funds"]
    assert type(alice["age"]) is int and type(alice["income"]) is float
    assert type(alice["resident"]) is bool and type(alice["held__funds"]) is int
    assert bob["age"] is None and bob["risk_level"] is None and bob["balance"] is None
    assert bob["risk_assessed_on"] is None and bob["active"] is None
    assert orjson.loads(orjson.dumps(alice)) == alice
    assert list(alice) == list(features.columns)


def test_records_of_many_chunks_keep_every_customer(catalogue: Catalogue) -> None:
    tables = synthetic_tables(product_ids(catalogue), customers=25_000, months=3, seed=5)
    frame = compute_features(tables, date(2025, 3, 31), catalogue)
    ids = [customer_id for customer_id, _ in to_records(frame)]
    assert ids == list(frame.index)
    assert not any(
        isinstance(v, np.generic) for _, r in to_records(frame.head(50)) for v in r.values()
    )


def test_deeper_holding_history_by_hand(features: pd.DataFrame) -> None:
    """Alice: credit card held June-August, dropped in September; funds since August."""
    alice = features.loc["alice"]
    expected = {
        # product: (months_since_held, times_held, adds, held_pattern)
        "credit_card": (1, 3, 1, 16 + 8 + 4),  # held 1, 2 and 3 snapshots back
        "funds": (0, 2, 1, 16),
        "current_account": (0, 6, 0, 31),
        "savings_account": (None, 0, 0, 0),  # never held in the lookback
    }
    for pid, values in expected.items():
        got = tuple(
            None if pd.isna(alice[f"{name}__{pid}"]) else alice[f"{name}__{pid}"]
            for name in ("months_since_held", "times_held", "adds", "held_pattern")
        )
        assert got == values, pid
    assert alice["products_added_1m"] == 0
    assert alice["products_dropped_1m"] == 1  # the credit card, August -> September
    bob = features.loc["bob"]  # no rows before August: held nothing then
    assert bob["months_since_held__savings_account"] == 0
    assert bob["adds__savings_account"] == 1
    assert bob["held_pattern__current_account"] == 16
    assert bob["products_added_1m"] == 1


def test_deeper_history_is_null_without_an_earlier_snapshot(catalogue: Catalogue) -> None:
    first = compute_features(bank(catalogue), APR, catalogue).loc["alice"]
    assert pd.isna(first["products_added_1m"])
    assert pd.isna(first["adds__current_account"])
    assert first["held_pattern__current_account"] == 0
    assert first["months_since_held__current_account"] == 0
