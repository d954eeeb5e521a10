"""Served MAP@7 (``training.served_lists``): the list a customer would be shown, after the
suitability, eligibility and channel filters, and its MAP computed as documented."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue, Product
from core.decisioning import DecisioningConfig, load_decisioning
from core.settings import Settings
from features.synthetic import generate_bank
from training.labels import added_products
from training.population import training_features
from training.recommender_data import Snapshot, align
from training.served_lists import (
    ServedFilter,
    ServedPart,
    served_metrics,
    served_part,
    served_rankings,
)

TODAY = date(2025, 12, 31)
PREVIOUS = date(2025, 11, 30)


def test_served_map_of_a_hand_checked_case() -> None:
    """A: added {0, 2}; product 0 (its best score) is not allowed, so the list is [1, 2, 3]
    and AP@7 = (1/2) / min(2, 7) = 0.25. B: added {3}, nothing allowed -> [] and AP 0.
    MAP = 0.125; half the customers would be shown nothing."""
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.4, 0.3, 0.2, 0.1]])
    allowed = np.array([[False, True, True, True], [False, False, False, False]])
    lists = served_rankings(scores, allowed, 7)
    assert lists == [[1, 2, 3], []]
    # Ties keep product order, as the unfiltered ranking; k cuts the list.
    assert served_rankings(np.array([[0.5, 0.5, 0.9]]), np.ones((1, 3), bool), 2) == [[2, 0]]
    metrics = served_metrics([ServedPart([{0, 2}, {3}], lists)], 7, "app")
    assert metrics == {
        "served_map_at_7": pytest.approx(0.125),
        "served_empty_share": 0.5,
        "served_channel": "app",
    }


@pytest.fixture(scope="module")
def snapshot(catalogue: Catalogue) -> Snapshot:
    tables = generate_bank(customers=400, months=3, seed=11, catalogue=catalogue, end_month=TODAY)
    ids = [p.id for p in catalogue.holdable]
    features = training_features(tables, PREVIOUS, catalogue)
    labels = added_products(tables, pd.Timestamp(PREVIOUS), pd.Timestamp(TODAY), ids)
    return align(features, labels, ids)


def _may_show(
    product: Product, row: pd.Series, config: DecisioningConfig, channel: str, validity: int
) -> bool:
    """Independent oracle: the catalogue's rules read straight off the feature row."""
    if product.status != "active" or row.get(f"held__{product.id}", 0) == 1:
        return False
    assessed = row.get("risk_assessed_on")
    level = row.get("risk_level")
    valid = (
        pd.notna(assessed)
        and pd.notna(level)
        and 0 <= (TODAY - pd.Timestamp(assessed).date()).days <= validity
    )
    if product.risk_level > (int(level) if valid else 1):
        return False
    rules = product.eligibility
    age = row.get("age")
    if rules.min_age is not None and not (pd.notna(age) and age >= rules.min_age):
        return False
    if rules.max_age is not None and not (pd.notna(age) and age <= rules.max_age):
        return False
    resident = row.get("resident")
    if rules.residents_only and not (pd.notna(resident) and bool(resident)):
        return False
    income, balance = row.get("income"), row.get("balance")
    if rules.min_income is not None and not (pd.notna(income) and income >= rules.min_income):
        return False
    if rules.min_assets is not None and not (pd.notna(balance) and balance >= rules.min_assets):
        return False
    return not any(
        product.category in r.categories
        and product.risk_level >= r.min_risk_level
        and channel not in r.channels
        for r in config.channel_rules
    )


def test_served_lists_hold_only_what_the_customer_may_be_shown(
    snapshot: Snapshot, catalogue: Catalogue
) -> None:
    settings = Settings()
    config = load_decisioning(settings.decisioning_path, catalogue)
    validity = settings.risk_assessment_validity_days
    ids = [p.id for p in catalogue.holdable]
    products = [catalogue.get(p) for p in ids]
    # Scores that put risky, advisor-only products first, so the filter has work to do.
    rng = np.random.default_rng(3)
    scores = rng.random((len(snapshot.features), len(ids))) + [p.risk_level for p in products]
    part = served_part(
        snapshot, scores, ids, 7, ServedFilter(catalogue, config, "app", validity), TODAY
    )
    unfiltered_unsuitable = 0
    for r, (served, (_, row)) in enumerate(
        zip(part.lists, snapshot.features.iterrows(), strict=True)
    ):
        may = [_may_show(p, row, config, "app", validity) for p in products]
        assert all(may[i] for i in served), (r, [ids[i] for i in served if not may[i]])
        # The model's order among what may be shown, as long as k allows.
        expected = sorted((i for i in range(len(ids)) if may[i]), key=lambda i: -scores[r, i])
        assert served == expected[:7]
        unfiltered_unsuitable += sum(not may[i] for i in np.argsort(-scores[r])[:7])
    assert unfiltered_unsuitable > 0  # the unfiltered top 7 did hold products never shown
    assert any(part.lists)
