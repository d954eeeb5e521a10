"""Nothing dated after the feature date reaches any feature, on both kinds of bank.

The oracle is the bank's data as it stood at ``as_of`` (``truncate_after``: every table
cut, customers included); features computed from the full tables must equal it exactly,
for every customer and every column, the moment features included. The tier gets an
independent check as well: on the synthetic bank, recomputed from the behaviour table.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.moments import default_moments
from core.tables import Tables
from features.pointintime import compute_features
from features.santander import import_santander
from features.synthetic import generate_bank
from tests.support.tables import truncate_after

END = date(2026, 10, 31)
PANEL = "santander/panel_2015-12_to_2016-05.csv.gz"


@pytest.fixture(scope="module")
def synthetic(catalogue: Catalogue) -> Tables:
    return generate_bank(customers=3000, months=10, seed=11, catalogue=catalogue, end_month=END)


@pytest.fixture(scope="module")
def santander(shared_data: Path, catalogue: Catalogue) -> Tables:
    return import_santander(shared_data / PANEL, catalogue).tables


def _assert_no_leak(tables: Tables, as_of: date, catalogue: Catalogue) -> pd.DataFrame:
    full = compute_features(tables, as_of, catalogue)
    cut = compute_features(truncate_after(tables, as_of), as_of, catalogue)
    pd.testing.assert_frame_equal(full, cut)
    return full


@pytest.mark.parametrize("as_of", [date(2026, 4, 30), date(2026, 7, 15), date(2026, 8, 31)])
def test_synthetic_bank_features_ignore_the_future(
    synthetic: Tables, catalogue: Catalogue, as_of: date
) -> None:
    full = _assert_no_leak(synthetic, as_of, catalogue)
    # The cut really removed something a leaky feature could have read.
    assert (synthetic.behaviour["month"] > pd.Timestamp(as_of)).any()
    assert (synthetic.customers["left_on"] > pd.Timestamp(as_of)).any()
    assert full["departed"].any() and not full["departed"].all()
    assert full["upgrade_candidate"].notna().all()
    opened = pd.to_datetime(synthetic.contracts["opened_on"])
    closed = pd.to_datetime(synthetic.contracts["closed_on"])
    assert (opened > pd.Timestamp(as_of)).any() and (closed > pd.Timestamp(as_of)).any()
    assert full["maturities"].map(len).gt(0).any()


def test_santander_panel_features_ignore_the_future(
    santander: Tables, catalogue: Catalogue
) -> None:
    full = _assert_no_leak(santander, date(2016, 3, 28), catalogue)
    assert len(full) > 10_000
    assert (full["tier"] == "private").any()  # master tier: Santander publishes no assets
    assert full["birth_month"].isna().all()  # birth dates are estimated from an age


def test_synthetic_tier_is_the_tier_of_the_assets_known_at_as_of(
    synthetic: Tables, catalogue: Catalogue
) -> None:
    """Independent oracle: each customer's latest balance on or before as_of, thresholded."""
    as_of = pd.Timestamp(date(2026, 6, 30))
    features = compute_features(synthetic, as_of.date(), catalogue)
    rows = synthetic.behaviour[synthetic.behaviour["month"] <= as_of].dropna(subset=["balance"])
    latest = rows.sort_values("month").groupby("customer_id")["balance"].last()
    thresholds = default_moments().tiers
    expected = latest.reindex(features.index).map(thresholds.tier_for)
    assert expected.notna().all()
    assert (features["tier"] == expected).all()
    # The master tier is the tier at each customer's LAST snapshot: for some customers it
    # differs from what their assets were at as_of (the leak this check guards against).
    master = synthetic.customers.set_index("customer_id")["tier"].reindex(features.index)
    assert (master != expected).mean() > 0.005
    assert set(np.unique(features["tier"])) <= {"mass", "affluent", "private"}
