"""compute_features(names=...): a batch job computes only the features its model reads."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import Tables
from features.pointintime import compute_features
from features.synthetic import generate_bank

AS_OF = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(700, 6, 9, catalogue, AS_OF)


def test_a_subset_equals_the_same_columns_of_every_feature(
    bank: Tables, catalogue: Catalogue
) -> None:
    everything = compute_features(bank, AS_OF, catalogue)
    wanted = ["tier", "departed", "months_since_login", "maturities", "age"]
    subset = compute_features(bank, AS_OF, catalogue, names=wanted)
    assert list(subset.columns) == [c for c in everything.columns if c in wanted]  # their order
    pd.testing.assert_frame_equal(subset, everything[list(subset.columns)])


def test_an_unknown_feature_name_is_an_error(bank: Tables, catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="no feature definition named nope"):
        compute_features(bank, AS_OF, catalogue, names=["age", "nope"])
