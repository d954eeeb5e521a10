"""What happened after a snapshot: the targets of the two models.

Labels look *forward* from ``as_of``; features (``features.pointintime``) look backward.
Both are cut at the same ``as_of``, so nothing dated after ``as_of`` can reach a feature.

* Recommender: the products a customer ADDED between snapshot ``as_of`` and the next one,
  i.e. held at the next snapshot and not at ``as_of``. Customers without a holdings row at
  the next snapshot (left, or not published) have no label and are left out.
* Churn: the customer's ``left_on`` falls within ``(as_of, as_of + horizon months]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.tables import Tables


def snapshot_months(tables: Tables) -> list[pd.Timestamp]:
    """Holdings snapshot dates, oldest first."""
    return [pd.Timestamp(m) for m in np.sort(tables.holdings["month"].dropna().unique())]


def data_end(tables: Tables) -> pd.Timestamp:
    """The last date the tables know anything about (latest holdings or behaviour month)."""
    ends = [tables.holdings["month"].max(), tables.behaviour["month"].max()]
    return max(pd.Timestamp(e) for e in ends if pd.notna(e))


def horizon_end(as_of: pd.Timestamp, horizon_months: int) -> pd.Timestamp:
    """``as_of`` plus ``horizon_months`` calendar months (month ends stay month ends)."""
    end = as_of + pd.DateOffset(months=horizon_months)
    return end + pd.offsets.MonthEnd(0) if as_of.is_month_end else end


def _held_at(tables: Tables, month: pd.Timestamp, product_ids: list[str]) -> pd.DataFrame:
    rows = tables.holdings[tables.holdings["month"] == month]
    rows = rows.drop_duplicates("customer_id", keep="last")
    held = rows.set_index(rows["customer_id"].astype(str))[product_ids]
    return (held.fillna(0) > 0).astype(np.int8)


def added_products(
    tables: Tables, as_of: pd.Timestamp, next_snapshot: pd.Timestamp, product_ids: list[str]
) -> pd.DataFrame:
    """0/1 per product: added between ``as_of`` and ``next_snapshot``; index customer_id.

    Only customers with a holdings row at ``next_snapshot``; one without a row at ``as_of``
    held nothing then (the convention of ``features.pointintime``).
    """
    after = _held_at(tables, next_snapshot, product_ids)
    before = _held_at(tables, as_of, product_ids).reindex(after.index, fill_value=0)
    added = (after.to_numpy() > 0) & (before.to_numpy() == 0)
    frame = pd.DataFrame(added.astype(np.int8), index=after.index, columns=product_ids)
    frame.index.name = "customer_id"
    return frame


def churned_within(customers: pd.DataFrame, as_of: pd.Timestamp, horizon_months: int) -> pd.Series:
    """1 if the customer left within ``(as_of, as_of + horizon]``, else 0; index customer_id."""
    master = customers.drop_duplicates("customer_id", keep="last")
    left = pd.to_datetime(master["left_on"])
    end = horizon_end(as_of, horizon_months)
    label = (left > as_of) & (left <= end)
    return pd.Series(
        label.fillna(False).astype(np.int8).to_numpy(),
        index=pd.Index(master["customer_id"].astype(str), name="customer_id"),
        name="churned",
    )
