"""The vectorised feature computation, pinned: each holdings statistic equals a plain
per-customer reading of the holdings rows, and one customer's history is worked by hand.

``compute_features`` computes the per-product statistics for every product in one pass
over a ``(product, snapshot, customer)`` array and builds the nullable columns from their
data and null masks; these tests recompute the same values the slow, obvious way (a loop
per customer and product over the rows dated on or before ``as_of``) on a random bank at
several dates, so that a faster implementation cannot drift from the definitions.
"""

from __future__ import annotations

from datetime import date
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from features.holdings_features import PATTERN_LAGS
from features.pointintime import LOOKBACK_SNAPSHOTS, compute_features
from features.record_codec import encode_frame
from features.record_schema import derive_schema
from tests.support.tables import customer, holding, make_tables, month_ends, synthetic_tables

STATISTICS = ("months_held", "dropped", "months_since_held", "times_held", "adds", "held_pattern")


def _by_hand(history: list[bool]) -> dict[str, float | None]:
    """Each per-product statistic of one customer's holdings, oldest snapshot first."""
    trailing = 0
    for held in reversed(history):
        if not held:
            break
        trailing += 1
    since = next((back for back, held in enumerate(reversed(history)) if held), None)
    adds = sum(1 for before, now in pairwise(history) if now and not before)
    pattern = 0
    for back in range(1, PATTERN_LAGS + 1):
        if back < len(history) and history[-1 - back]:
            pattern += 1 << (PATTERN_LAGS - back)
    return {
        "months_held": trailing,
        "dropped": int(any(history[:-1]) and not history[-1]),
        "months_since_held": since,
        "times_held": sum(history),
        "adds": adds if len(history) > 1 else None,
        "held_pattern": pattern,
    }


@pytest.mark.parametrize(
    "as_of", [date(2025, 1, 31), date(2025, 2, 28), date(2025, 9, 15), date(2026, 3, 31)]
)
def test_holdings_statistics_equal_a_per_customer_reading(
    catalogue: Catalogue, as_of: date
) -> None:
    products = [p.id for p in catalogue.holdable]
    tables = synthetic_tables(products, 400, 15, seed=5)
    frame = compute_features(tables, as_of, catalogue)
    holdings = tables.holdings[tables.holdings["month"] <= pd.Timestamp(as_of)]
    snapshots = sorted(holdings["month"].unique())[-LOOKBACK_SNAPSHOTS:]
    rows = holdings.set_index(["customer_id", "month"])
    checked = 0
    for customer_id in frame.index[::7]:
        for product in products[::3]:
            history = [
                bool((customer_id, m) in rows.index and rows.loc[(customer_id, m), product] > 0)
                for m in snapshots
            ]
            for name, expected in _by_hand(history).items():
                got = frame.at[customer_id, f"{name}__{product}"]
                assert (None if pd.isna(got) else got) == expected, (customer_id, product, name)
                checked += 1
    assert checked > 500
    for name in STATISTICS:
        assert str(frame[f"{name}__{products[0]}"].dtype) == "Int64"


def test_a_product_dropped_and_held_again_by_hand(catalogue: Catalogue) -> None:
    """Held Jan-Feb, dropped Mar-Apr, held again May-Jun; a second product only in March."""
    jan, feb, mar, apr, may, jun = (m.date() for m in month_ends(date(2026, 1, 1), 6))
    rows = [
        holding("ana", jan, "current_account", "funds"),
        holding("ana", feb, "current_account", "funds"),
        holding("ana", mar, "current_account", "credit_card"),
        holding("ana", apr, "current_account"),
        holding("ana", may, "current_account", "funds"),
        holding("ana", jun, "current_account", "funds"),
        holding("left", jun, "savings_account"),
    ]
    people = [
        customer("ana", joined_on=date(2020, 1, 1)),
        customer("left", joined_on=date(2020, 1, 1), left_on=date(2026, 6, 10)),
    ]
    tables = make_tables([p.id for p in catalogue.holdable], people, rows)
    frame = compute_features(tables, jun, catalogue)
    ana = frame.loc["ana"]
    assert (ana["months_held__funds"], ana["times_held__funds"], ana["adds__funds"]) == (2, 4, 1)
    assert (ana["months_since_held__funds"], ana["dropped__funds"]) == (0, 0)
    assert ana["held_pattern__funds"] == 16 + 2 + 1  # 1, 4 and 5 snapshots back; not 2-3
    assert (ana["dropped__credit_card"], ana["months_since_held__credit_card"]) == (1, 3)
    assert (ana["adds__credit_card"], ana["times_held__credit_card"]) == (1, 1)
    assert ana["held_pattern__credit_card"] == 4  # three snapshots back
    assert pd.isna(ana["months_since_held__mortgage"]) and ana["times_held__mortgage"] == 0
    assert ana["held"] == ("current_account", "funds") and ana["n_products"] == 2
    assert (ana["products_added_3m"], ana["products_dropped_3m"]) == (1, 1)
    assert not ana["departed"] and pd.isna(ana["months_since_left"])
    assert frame.loc["left", "departed"] and frame.loc["left", "months_since_left"] == 0
    assert frame.loc["left", "lifecycle_stage"] == "churned"


def test_customers_without_maturities_encode_as_empty_lists(catalogue: Catalogue) -> None:
    """Customers without a maturing contract share one empty list; each record still holds
    its own ``[]`` and the records of a frame equal those of a copy with distinct lists."""
    products = [p.id for p in catalogue.holdable]
    frame = compute_features(
        synthetic_tables(products, 50, 6, seed=2), date(2025, 6, 30), catalogue
    )
    assert all(value == [] for value in frame["maturities"])
    distinct = frame.assign(maturities=[[] for _ in range(len(frame))])
    schema = derive_schema(frame)
    assert encode_frame(schema, frame) == encode_frame(schema, distinct)
    decoded = schema.codec.decode(encode_frame(schema, frame)[0])
    assert decoded["maturities"] == [] and isinstance(decoded["maturities"], list)
    assert np.array_equal(frame.index, distinct.index)
