"""Synthetic contracts: valid, deterministic, consistent with holdings and behaviour, and
with the planted behaviour at maturity visible in the data."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import Tables, contract_products, validate_contracts
from features.synthetic import generate_bank
from features.synthetic_contracts import DEPOSIT_TERMS_MONTHS

END = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(8_000, 12, 5, catalogue, END)


def test_valid_and_deterministic(bank: Tables, catalogue: Catalogue) -> None:
    validate_contracts(bank.contracts, contract_products(catalogue))
    again = generate_bank(8_000, 12, 5, catalogue, END)
    pd.testing.assert_frame_equal(bank.contracts, again.contracts)
    other = generate_bank(8_000, 12, 6, catalogue, END)
    assert not bank.contracts["amount"].equals(other.contracts["amount"])
    products = set(bank.contracts["product"])
    assert set(DEPOSIT_TERMS_MONTHS) <= products and "loans" in products
    deposits = bank.contracts[bank.contracts["product"].isin(list(DEPOSIT_TERMS_MONTHS))]
    assert deposits["maturity_date"].notna().all()
    assert set(deposits["outcome"].dropna()) == {"renewed", "moved", "left"}


def _open_at(contracts: pd.DataFrame, rows: pd.DataFrame, product: str) -> pd.Series:
    """Per holdings row: is a contract of ``product`` open at its month (hand-computed)?"""
    mine = contracts[contracts["product"] == product]
    pairs = rows[["customer_id", "month"]].reset_index().merge(mine, on="customer_id")
    open_ = (pairs["opened_on"] <= pairs["month"]) & (
        pairs["closed_on"].isna() | (pairs["month"] < pairs["closed_on"])
    )
    hit = pairs.loc[open_, "index"].unique()
    return pd.Series(rows.index.isin(hit), index=rows.index)


@pytest.mark.parametrize("product", [*DEPOSIT_TERMS_MONTHS, "loans"])
def test_a_held_contract_product_has_an_open_contract(bank: Tables, product: str) -> None:
    rows = bank.holdings
    held = rows[product] == 1
    open_ = _open_at(bank.contracts, rows, product)
    assert held.sum() > 100
    assert (open_[held]).all()
    if product in DEPOSIT_TERMS_MONTHS:  # deposits are held exactly while a contract is open
        assert (held[open_]).all()


def test_money_that_leaves_shows_as_outflow(bank: Tables) -> None:
    c = bank.contracts
    left = c[(c["outcome"] == "left") & (c["closed_on"] == c["maturity_date"])]
    behaviour = bank.behaviour.set_index(["customer_id", "month"])
    months = pd.DatetimeIndex(sorted(bank.behaviour["month"].unique()))
    position = months.searchsorted(left["closed_on"])
    inside = position < len(months)
    keys = list(zip(left["customer_id"][inside], months[position[inside]], strict=True))
    present = [k for k in keys if k in behaviour.index]
    assert len(present) > 50
    outflow = behaviour.loc[present, "outflow"].to_numpy()
    amount = left["amount"][inside].to_numpy()[[k in behaviour.index for k in keys]]
    balance_before = behaviour.loc[present, "balance"].to_numpy() + outflow
    # The month's outflow holds the deposit (or all the customer had left, if less).
    assert (outflow >= np.minimum(amount, balance_before) * 0.999).mean() > 0.99


def test_planted_effects_show_in_the_outcomes(bank: Tables) -> None:
    c = bank.contracts
    at_maturity = c["closed_on"] == c["maturity_date"]
    matured = c[c["outcome"].isin(["renewed", "moved", "left"]) & at_maturity]
    first = c.sort_values("opened_on").groupby(["customer_id", "product"]).head(1)
    behaviour = bank.behaviour
    # Amount share of the balance at opening: the visible trace of rate sensitivity.
    balance = behaviour.groupby("customer_id")["balance"].median()
    share = first["amount"] / first["customer_id"].map(balance)
    hunters = set(first.loc[share > 0.5, "customer_id"])
    left = matured["outcome"] == "left"
    by_hunters = matured["customer_id"].isin(hunters)
    assert left[by_hunters].mean() > 1.5 * left[~by_hunters].mean()
    leavers = set(bank.customers.loc[bank.customers["left_on"].notna(), "customer_id"])
    churning = matured["customer_id"].isin(leavers)
    assert left[churning].mean() > 2 * left[~churning].mean()
