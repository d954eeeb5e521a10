"""The synthetic bank: deterministic, canonical, and with signal a model can learn."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.data import app as data_app
from core.catalogue import Catalogue
from core.tables import Tables, contract_products, read_tables, write_tables
from features.synthetic import generate_bank, month_ends

END = date(2025, 12, 31)
MONTHS = 12
Frames = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(6_000, MONTHS, 3, catalogue, END)


@pytest.fixture(scope="module")
def ordered(bank: Tables) -> Frames:
    holdings = bank.holdings.sort_values(["customer_id", "month"]).reset_index(drop=True)
    behaviour = bank.behaviour.sort_values(["customer_id", "month"]).reset_index(drop=True)
    return holdings, behaviour


def _transitions(holdings: pd.DataFrame, products: list[str]) -> Frames:
    """(held before, held after) for every pair of consecutive rows of one customer."""
    previous = holdings.groupby("customer_id")[products].shift(1)
    paired = previous.notna().all(axis=1).to_numpy()
    return previous[paired].astype(int), holdings.loc[paired, products]


def test_month_ends_and_bad_end_month(catalogue: Catalogue) -> None:
    assert month_ends(date(2024, 3, 31), 3) == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
    ]
    with pytest.raises(ValueError, match="not the last day"):
        generate_bank(10, 3, 1, catalogue, date(2025, 12, 30))


def test_same_seed_same_bank(catalogue: Catalogue) -> None:
    first = generate_bank(500, 6, 42, catalogue, END)
    second = generate_bank(500, 6, 42, catalogue, END)
    other = generate_bank(500, 6, 43, catalogue, END)
    for name in ("customers", "holdings", "behaviour"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert not first.behaviour["balance"].equals(other.behaviour["balance"])


def test_schema_round_trips(bank: Tables, catalogue: Catalogue, tmp_path: Path) -> None:
    products = [p.id for p in catalogue.holdable]
    write_tables(bank, tmp_path, products, contract_products(catalogue))
    back = read_tables(tmp_path)
    assert list(back.holdings.columns) == ["customer_id", "month", *products]
    assert (back.holdings[products].dtypes == np.int8).all()
    assert len(back.customers) == 6_000 and back.customers["customer_id"].is_unique
    months = sorted(back.holdings["month"].unique())
    assert [pd.Timestamp(m).date() for m in months] == month_ends(END, MONTHS)
    assert set(back.customers["preferred_channel"]) <= {
        "app",
        "push",
        "sms",
        "email",
        "advisor",
        "branch",
    }
    assert not back.holdings.duplicated(["customer_id", "month"]).any()


def test_tier_and_risk_assessment_shares(bank: Tables) -> None:
    customers = bank.customers
    tiers = customers["tier"].value_counts(normalize=True)
    assert 0.80 <= tiers["mass"] <= 0.90
    assert 0.08 <= tiers["affluent"] <= 0.18
    assert 0.008 <= tiers["private"] <= 0.04
    assessed = customers["risk_assessed_on"]
    assert (assessed.isna() == customers["risk_level"].isna()).all()
    assert 0.07 <= assessed.isna().mean() <= 0.13
    expired = (pd.Timestamp(END) - assessed).dt.days > 730
    assert 0.06 <= expired.mean() <= 0.14
    levels = customers["risk_level"].value_counts(normalize=True)
    assert levels[2] + levels[3] > 0.5 and levels[5] < levels[3]


def test_rows_start_at_joining_and_stop_at_leaving(bank: Tables, ordered: Frames) -> None:
    holdings, behaviour = ordered
    customers = bank.customers.set_index("customer_id")
    span = holdings.groupby("customer_id")["month"].agg(["min", "max"])
    joined = customers.loc[span.index, "joined_on"]
    left = customers.loc[span.index, "left_on"]
    assert (span["min"] >= joined).all()
    late = joined > pd.Timestamp(month_ends(END, MONTHS)[0])
    assert late.sum() > 100
    assert ((span["min"] - joined)[late] <= pd.Timedelta(days=31)).all()
    leavers = left.notna()
    assert leavers.sum() > 200
    assert (span["max"][leavers] < left[leavers]).all()
    assert ((left[leavers] - span["max"][leavers]) <= pd.Timedelta(days=31)).all()
    assert behaviour[["customer_id", "month"]].equals(holdings[["customer_id", "month"]])


def test_churners_stop_logging_in_and_move_money_out(bank: Tables, ordered: Frames) -> None:
    _, behaviour = ordered
    left = bank.customers.set_index("customer_id")["left_on"]
    behaviour = behaviour.assign(leaver=behaviour["customer_id"].map(left).notna().to_numpy())
    last = behaviour.groupby("customer_id").tail(1)
    leavers = last[last["leaver"]]
    assert (leavers["logins"] == 0).all()
    # Balance at the last row against three rows before (customers with that much history).
    earlier = behaviour.groupby("customer_id")["balance"].shift(3)
    ratio = (behaviour["balance"] / earlier)[last.index]
    assert ratio[last["leaver"]].median() < 0.6
    assert ratio[~last["leaver"]].median() > 0.9
    # Noise: loyal customers too have idle months and falling balances sometimes.
    loyal = behaviour[~behaviour["leaver"]]
    assert 0.01 < (loyal["logins"] == 0).mean() < 0.5
    assert (ratio[~last["leaver"]] < 0.6).mean() > 0.005


def test_adds_are_rare_and_driven_by_what_is_held(ordered: Frames, catalogue: Catalogue) -> None:
    holdings, _ = ordered
    products = [p.id for p in catalogue.holdable]
    before, after = _transitions(holdings, products)
    added = (after.to_numpy() == 1) & (before.to_numpy() == 0)
    assert 0.01 < added.any(axis=1).mean() < 0.10
    without_payroll = before["payroll"].to_numpy() == 0
    with_account = before["payroll_account"].to_numpy() == 1
    payroll_added = added[:, products.index("payroll")]
    rate_with = payroll_added[without_payroll & with_account].mean()
    rate_without = payroll_added[without_payroll & ~with_account].mean()
    assert rate_with > 3 * rate_without
    assert added[:, products.index("home_account")].sum() == 0  # withdrawn from sale
    assert added.sum(axis=0).min() >= 0 and (added.sum(axis=0) > 0).sum() >= 15


def test_investors_hold_risky_products_and_minors_junior_accounts(
    bank: Tables, ordered: Frames, catalogue: Catalogue
) -> None:
    holdings, _ = ordered
    customers = bank.customers.set_index("customer_id")
    latest = holdings.groupby("customer_id").tail(1).set_index("customer_id")
    level = customers.loc[latest.index, "risk_level"].fillna(0).astype(int)
    risky = latest[["funds", "securities"]].max(axis=1)
    assert risky[level >= 4].mean() > 2 * risky[level <= 2].mean()
    age = (latest["month"] - customers.loc[latest.index, "birth_date"]).dt.days / 365.25
    minors = age < 18
    assert minors.sum() > 50
    assert latest.loc[minors, "junior_account"].mean() > 0.5
    assert latest.loc[~minors, "junior_account"].sum() == 0
    adult_only = [p.id for p in catalogue.holdable if (p.eligibility.min_age or 0) >= 18]
    assert latest.loc[minors, adult_only].to_numpy().sum() == 0
    retired = age >= 65
    assert (
        latest.loc[retired, "pension_payroll"].mean()
        > 3 * latest.loc[~retired & ~minors, "pension_payroll"].mean()
    )


def test_generate_command(tmp_path: Path) -> None:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    out = tmp_path / "data"
    args = ["data", "generate", "--customers", "300", "--months", "4", "--seed", "5"]
    result = CliRunner().invoke(root, [*args, "--end-month", "2025-06-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "300 customers" in result.output
    assert len(read_tables(out).customers) == 300
    bad = CliRunner().invoke(root, [*args, "--end-month", "2025-06-15", "--out", str(out)])
    assert bad.exit_code == 2
    assert "not the last day" in bad.stderr
