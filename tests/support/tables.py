"""Factories for small hand-built canonical tables and large synthetic ones (feature tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from core.tables import BEHAVIOUR_SCHEMA, CUSTOMER_SCHEMA, Tables

CUSTOMER_DATES = ("birth_date", "joined_on", "left_on", "risk_assessed_on")


def customer(customer_id: str, **fields: Any) -> dict[str, Any]:
    """A customer master row; unspecified fields are unknown (or a plain default)."""
    row: dict[str, Any] = {name: None for name in CUSTOMER_SCHEMA.names}
    row.update(customer_id=customer_id, joined_on=date(2015, 1, 1), tier="mass", employee=False)
    row.update(fields)
    return row


def holding(customer_id: str, month: date, *held: str) -> dict[str, Any]:
    """A holdings snapshot row listing the products held."""
    return {"customer_id": customer_id, "month": month, "held": held}


def activity(customer_id: str, month: date, **fields: Any) -> dict[str, Any]:
    """A behaviour row; unspecified measures are unknown."""
    row: dict[str, Any] = {name: None for name in BEHAVIOUR_SCHEMA.names}
    row.update(customer_id=customer_id, month=month, **fields)
    return row


def make_tables(
    product_ids: Sequence[str],
    customers: Iterable[dict[str, Any]],
    holdings: Iterable[dict[str, Any]],
    behaviour: Iterable[dict[str, Any]] = (),
) -> Tables:
    """Canonical-table frames (dates as datetime64) from rows built with the helpers above."""
    master = pd.DataFrame(list(customers), columns=CUSTOMER_SCHEMA.names)
    for column in CUSTOMER_DATES:
        master[column] = pd.to_datetime(master[column])
    master["income"] = master["income"].astype("float64")
    master["risk_level"] = master["risk_level"].astype("Int8")
    master["resident"] = master["resident"].astype("boolean")
    master["employee"] = master["employee"].astype("boolean")

    rows = []
    for row in holdings:
        flags = {pid: np.int8(pid in row["held"]) for pid in product_ids}
        unknown = set(row["held"]) - set(product_ids)
        assert not unknown, f"unknown products {unknown}"
        rows.append({"customer_id": row["customer_id"], "month": row["month"], **flags})
    wide = pd.DataFrame(rows, columns=["customer_id", "month", *product_ids])
    wide["month"] = pd.to_datetime(wide["month"])
    wide[list(product_ids)] = wide[list(product_ids)].astype("int8")

    acts = pd.DataFrame(list(behaviour), columns=BEHAVIOUR_SCHEMA.names)
    acts["month"] = pd.to_datetime(acts["month"])
    acts["logins"] = acts["logins"].astype("Int32")
    for column in ("balance", "inflow", "outflow"):
        acts[column] = acts[column].astype("float64")
    acts["active"] = acts["active"].astype("boolean")
    return Tables(customers=master, holdings=wide, behaviour=acts)


def month_ends(first: date, count: int) -> list[pd.Timestamp]:
    return list(pd.date_range(pd.Timestamp(first), periods=count, freq="ME"))


def synthetic_tables(
    product_ids: Sequence[str], customers: int, months: int, seed: int = 7
) -> Tables:
    """A random but plausible bank, built vectorised (for scale and property tests).

    Snapshots are month ends from January 2025; some customers join late or leave; some
    behaviour values are unknown.
    """
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(np.arange(customers).astype(str), 7))
    snapshots = month_ends(date(2025, 1, 1), months)
    first_month = rng.integers(0, max(1, months // 2), customers)
    first_month[rng.random(customers) < 0.7] = 0
    joined = np.array(snapshots, dtype="datetime64[ns]")[first_month] - np.timedelta64(3, "D")
    left = np.full(customers, np.datetime64("NaT"), dtype="datetime64[ns]")
    leavers = rng.random(customers) < 0.05
    left[leavers] = np.array(snapshots, dtype="datetime64[ns]")[
        rng.integers(0, months, leavers.sum())
    ] + np.timedelta64(10, "D")
    assessed = pd.Timestamp(snapshots[0]) + pd.to_timedelta(
        rng.integers(-900, 30 * months, customers), unit="D"
    )
    master = pd.DataFrame(
        {
            "customer_id": ids,
            "birth_date": pd.to_datetime(
                pd.Timestamp("1940-01-01")
                + pd.to_timedelta(rng.integers(0, 25_000, customers), "D")
            ).where(rng.random(customers) > 0.02),
            "sex": rng.choice(["F", "M"], customers),
            "joined_on": joined,
            "left_on": left,
            "tier": rng.choice(["mass", "affluent", "private"], customers, p=[0.8, 0.17, 0.03]),
            "segment": rng.choice(["trading", "allocation", "advice"], customers),
            "income": rng.lognormal(10.5, 0.6, customers),
            "region": rng.choice(["north", "south"], customers),
            "resident": rng.random(customers) > 0.05,
            "employee": rng.random(customers) < 0.01,
            "risk_level": pd.array(rng.integers(1, 6, customers), dtype="Int8"),
            "risk_assessed_on": assessed,
            "preferred_channel": rng.choice(["app", "push", "sms", "email"], customers),
        }
    )
    cust_idx = np.repeat(np.arange(customers), months)
    month_idx = np.tile(np.arange(months), customers)
    present = month_idx >= first_month[cust_idx]
    cust_idx, month_idx = cust_idx[present], month_idx[present]
    n = len(cust_idx)
    base = rng.random((customers, len(product_ids))) < 0.12
    churn = rng.random((n, len(product_ids))) < 0.03
    held = (base[cust_idx] ^ churn).astype(np.int8)
    month_values = np.array(snapshots, dtype="datetime64[ns]")[month_idx]
    holdings = pd.DataFrame(held, columns=list(product_ids))
    holdings.insert(0, "month", month_values)
    holdings.insert(0, "customer_id", ids[cust_idx])

    balance = rng.lognormal(8, 1.5, customers)[cust_idx] * rng.uniform(0.8, 1.2, n)
    logins = rng.poisson(4, n).astype("float64")
    logins[rng.random(n) < 0.05] = np.nan
    behaviour = pd.DataFrame(
        {
            "customer_id": ids[cust_idx],
            "month": month_values,
            "logins": pd.array(logins, dtype="Int32"),
            "balance": balance,
            "inflow": rng.exponential(500, n),
            "outflow": rng.exponential(500, n),
            "active": pd.array(logins > 0, dtype="boolean"),
        }
    )
    return Tables(customers=master, holdings=holdings, behaviour=behaviour)


def truncate_after(tables: Tables, as_of: date | pd.Timestamp) -> Tables:
    """The tables as the bank held them at the end of ``as_of``: the leak-test oracle.

    Holdings and behaviour rows dated after ``as_of`` are dropped; customers who joined
    after it are dropped; a departure (``left_on``) or a risk assessment (its date and
    level) dated after it is unknown. Undated master columns stay as they are. Contracts
    opened after it are dropped, and a closing (``closed_on`` and its ``outcome``) dated
    after it is unknown.
    """
    cut = pd.Timestamp(as_of)
    master = tables.customers[~(pd.to_datetime(tables.customers["joined_on"]) > cut)].copy()
    left = pd.to_datetime(master["left_on"])
    master["left_on"] = left.where(~(left > cut))
    assessed = pd.to_datetime(master["risk_assessed_on"])
    later = (assessed > cut).to_numpy()
    master["risk_assessed_on"] = assessed.where(~later)
    master["risk_level"] = master["risk_level"].astype("Int8").mask(later)
    contracts = tables.contracts[pd.to_datetime(tables.contracts["opened_on"]) <= cut].copy()
    closed_later = (pd.to_datetime(contracts["closed_on"]) > cut).to_numpy()
    contracts["closed_on"] = pd.to_datetime(contracts["closed_on"]).mask(closed_later)
    contracts["outcome"] = contracts["outcome"].astype(object).mask(closed_later)
    return Tables(
        customers=master.reset_index(drop=True),
        holdings=tables.holdings[tables.holdings["month"] <= cut].reset_index(drop=True),
        behaviour=tables.behaviour[tables.behaviour["month"] <= cut].reset_index(drop=True),
        contracts=contracts.reset_index(drop=True),
    )
