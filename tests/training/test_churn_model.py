"""The production churn model on planted data: calibration, reason codes, batch == online."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.scoring.churn import LinearChurnModel
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from training.churn import ChurnConfig, calibration_table, fit_churn
from training.datasets import LabelledSnapshot, churn_split

RISK_CODES = {
    "months_since_login",
    "logins_1m",
    "logins_3m_avg",
    "login_trend",
    "balance_change_1m",
    "balance_change_3m",
    "net_flow_1m",
    "net_flow_3m",
    "products_dropped_3m",
}


def planted_snapshot(rows: int, seed: int, as_of: str) -> tuple[LabelledSnapshot, np.ndarray]:
    """Customers whose true churn probability is a known logistic function of two signals:
    months without a login and the 3-month asset change (plus noise features)."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"c{seed}-{i}" for i in range(rows)], name="customer_id")
    idle = rng.choice([0, 0, 0, 0, 1, 2, 3, 4, 6], rows).astype(float)
    change = np.where(
        rng.random(rows) < 0.2, rng.uniform(-0.8, -0.2, rows), rng.normal(0, 0.05, rows)
    )
    true_p = 1 / (1 + np.exp(-(-4.0 + 0.8 * idle - 4.0 * change)))
    features = pd.DataFrame(
        {
            "months_since_login": idle,
            "balance_change_3m": change,
            "logins_3m_avg": np.where(idle > 0, 0.0, rng.uniform(2, 12, rows)),
            "n_products": rng.integers(1, 5, rows).astype(float),
            "age": rng.integers(18, 80, rows).astype(float),
            "tier": rng.choice(["mass", "affluent", "private"], rows),
        },
        index=ids,
    )
    labels = pd.DataFrame({"churned": (rng.random(rows) < true_p).astype(int)}, index=ids)
    return LabelledSnapshot(pd.Timestamp(as_of), features, labels), true_p


@pytest.fixture(scope="module")
def planted() -> tuple[LinearChurnModel, LabelledSnapshot, np.ndarray]:
    train = [planted_snapshot(8000, seed, f"2025-0{seed}-28")[0] for seed in (1, 2)]
    model = fit_churn(train, horizon_months=3, config=ChurnConfig())
    holdout, true_p = planted_snapshot(8000, 9, "2025-06-30")
    return model, holdout, true_p


def test_calibrated_probabilities_match_observed_churn_in_bins(
    planted: tuple[LinearChurnModel, LabelledSnapshot, np.ndarray],
) -> None:
    model, holdout, true_p = planted
    target = holdout.labels["churned"].to_numpy()
    proba = model.predict_frame(holdout.features)
    table = calibration_table(target, proba, bins=5)
    assert len(table) == 5
    # each bin's mean prediction is within 4 points of the churn rate actually observed
    assert np.abs(table["predicted"] - table["observed"]).max() < 0.04, table
    assert abs(proba.mean() - target.mean()) < 0.01
    # and the model tracks the planted truth, not just the average
    assert np.corrcoef(proba, true_p)[0, 1] > 0.9


def test_reasons_point_at_the_planted_signal(
    planted: tuple[LinearChurnModel, LabelledSnapshot, np.ndarray],
) -> None:
    model, _, _ = planted
    idle_and_draining = {
        "months_since_login": 4,
        "balance_change_3m": -0.4,
        "logins_3m_avg": 0.0,
        "n_products": 2,
        "age": 45,
        "tier": "mass",
    }
    texts = {r.code: r.text for r in model.reasons(idle_and_draining)}
    assert texts["months_since_login"] == "no login for 4 months"
    assert texts["balance_change_3m"] == "assets down 40% in 3 months"
    assert model.predict_proba(idle_and_draining) > 0.5


def test_a_low_risk_customer_gets_no_reassuring_signal_as_a_reason(
    planted: tuple[LinearChurnModel, LabelledSnapshot, np.ndarray],
) -> None:
    model, _, _ = planted
    loyal = {
        "months_since_login": 0,
        "balance_change_3m": 0.05,
        "logins_3m_avg": 9.0,
        "n_products": 3,
        "age": 45,
        "tier": "mass",
    }
    assert model.predict_proba(loyal) < 0.05
    reasons = model.reasons(loyal)
    assert not any(
        r.code in {"months_since_login", "balance_change_3m", "logins_3m_avg"} for r in reasons
    )
    assert not any("9.0 logins" in r.text for r in reasons)


# -- batch == online on a synthetic bank --------------------------------------------------------


@pytest.fixture(scope="module")
def bank_model(catalogue: Catalogue) -> tuple[LinearChurnModel, pd.DataFrame]:
    bank = generate_bank(
        customers=1500, months=8, seed=5, catalogue=catalogue, end_month=date(2025, 12, 31)
    )
    split = churn_split(bank, catalogue, 3)
    model = fit_churn(split.train, 3, ChurnConfig())
    return model, compute_features(bank, date(2025, 12, 31), catalogue)


def test_batch_explanations_equal_per_customer_online_scoring(
    bank_model: tuple[LinearChurnModel, pd.DataFrame],
) -> None:
    model, features = bank_model
    proba, reasons = model.explain_frame(features)
    assert len(proba) == len(reasons) == len(features)
    for i, (_, record) in enumerate(to_records(features)):
        assert model.predict_proba(record) == proba[i]
        assert model.reasons(record) == reasons[i]
    riskiest = int(np.argmax(proba))
    assert reasons[riskiest] and {r.code for r in reasons[riskiest]} & RISK_CODES


def test_unknown_values_and_categories_score_and_explain(
    bank_model: tuple[LinearChurnModel, pd.DataFrame],
) -> None:
    model, _ = bank_model
    record = {"months_since_login": None, "tier": "unheard-of", "balance": "n/a"}
    assert 0.0 <= model.predict_proba(record) <= 1.0
    assert all(r.text for r in model.reasons(record))
