"""The ``maturities`` record field: the customer's contracts maturing soon, as known at as_of.

Why: the maturity trigger and the maturity outflow model need, in the one record the request
path reads, each contract about to mature; they must see only what the bank knew at
``as_of``. A contract is listed when it was opened on or before ``as_of``, was still open
then (not closed on or before ``as_of``), and its maturity date falls in
``(as_of, as_of + MATURITY_HORIZON_DAYS]``. How it ends is never part of the field.

Each entry is exactly ``{"contract", "product", "opened_on", "maturity_date", "amount"}``:
``contract`` is a keyed pseudonym of the bank's contract id (HMAC with the pseudonym key,
domain ``contract:``), never the id itself; dates are ISO ``YYYY-MM-DD``. Entries are
ordered by maturity date, then key; a customer with none has ``[]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.pseudonym import pseudonymiser
from core.settings import get_settings

if TYPE_CHECKING:
    from features.pointintime import PointInTimeContext

MATURITY_HORIZON_DAYS = 45
"""How far ahead ``maturities`` looks (the trigger fires 7 days before; 45 leaves room for a
feature set that is a few weeks old)."""
CONTRACT_KEY_DOMAIN = "contract:"
CONTRACT_KEY_CHARS = 32


def contract_key(contract_id: str) -> str:
    """The pseudonymous key of a contract (stable for one pseudonym key)."""
    pseudonym = pseudonymiser(get_settings())
    return pseudonym(CONTRACT_KEY_DOMAIN + contract_id)[:CONTRACT_KEY_CHARS]


def known_at(contracts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """``contracts`` as the bank knew them at the end of ``as_of``: opened by then, and how
    a contract ended only when it ended by then (later closings and outcomes are blanked)."""
    opened = pd.to_datetime(contracts["opened_on"])
    known = contracts[(opened <= as_of).to_numpy()]
    later = (pd.to_datetime(known["closed_on"]) > as_of).to_numpy()
    if later.any():
        known = known.copy()
        known.loc[later, "closed_on"] = pd.NaT
        known.loc[later, "outcome"] = None
    return known


def maturing(
    contracts: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int = MATURITY_HORIZON_DAYS
) -> pd.DataFrame:
    """Rows of ``contracts`` open at ``as_of`` and maturing in ``(as_of, as_of + horizon]``."""
    opened = pd.to_datetime(contracts["opened_on"])
    maturity = pd.to_datetime(contracts["maturity_date"])
    closed = pd.to_datetime(contracts["closed_on"])
    end = as_of + pd.Timedelta(days=horizon_days)
    keep = (
        (opened <= as_of)
        & maturity.notna()
        & (maturity > as_of)
        & (maturity <= end)
        & (closed.isna() | (closed > as_of))
    )
    return contracts[keep.to_numpy()]


def maturities(ctx: PointInTimeContext) -> pd.Series:
    """Per customer, the list of entries described in the module docstring.

    Customers without a maturing contract (most of them) share one empty list: a feature
    frame's values are read, never changed in place.
    """
    values = np.empty(ctx.size, dtype=object)
    values.fill([])
    rows = maturing(ctx.contracts, ctx.as_of)
    position = ctx.index.get_indexer(pd.Index(rows["customer_id"].astype(str), dtype=object))
    rows = rows.assign(_position=position)[position >= 0]
    rows = rows.assign(_key=[contract_key(str(c)) for c in rows["contract_id"]])
    rows = rows.sort_values(["_position", "maturity_date", "_key"], kind="stable")
    for pos, key, product, opened, maturity, amount in zip(
        rows["_position"],
        rows["_key"],
        rows["product"],
        pd.to_datetime(rows["opened_on"]).dt.strftime("%Y-%m-%d"),
        pd.to_datetime(rows["maturity_date"]).dt.strftime("%Y-%m-%d"),
        rows["amount"].astype(float),
        strict=True,
    ):
        entries = values[pos]
        if not entries:
            entries = values[pos] = []
        entries.append(
            {
                "contract": key,
                "product": str(product),
                "opened_on": opened,
                "maturity_date": maturity,
                "amount": float(amount),
            }
        )
    return ctx.series(values)
