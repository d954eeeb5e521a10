"""A file in the public Churn_Modelling layout with planted churn (tests of its readers)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def fake_churn_modelling(rows: int, seed: int = 0) -> pd.DataFrame:
    """The public column layout; churn driven by age, inactivity and 3+ products."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    active = rng.integers(0, 2, rows)
    products = rng.choice([1, 2, 3, 4], rows, p=[0.5, 0.42, 0.06, 0.02])
    logit = -3 + 0.06 * (age - 40) + 1.0 * (1 - active) + 2.5 * (products >= 3)
    return pd.DataFrame(
        {
            "RowNumber": np.arange(1, rows + 1),
            "CustomerId": rng.integers(15_000_000, 16_000_000, rows),
            "Surname": rng.choice(["Hill", "Onio", "Chu"], rows),
            "CreditScore": rng.integers(350, 850, rows),
            "Geography": rng.choice(["France", "Germany", "Spain"], rows),
            "Gender": rng.choice(["Female", "Male"], rows),
            "Age": age,
            "Tenure": rng.integers(0, 11, rows),
            "Balance": np.where(rng.random(rows) < 0.35, 0.0, rng.normal(120_000, 30_000, rows)),
            "NumOfProducts": products,
            "HasCrCard": rng.integers(0, 2, rows),
            "IsActiveMember": active,
            "EstimatedSalary": rng.uniform(1_000, 200_000, rows).round(2),
            "Exited": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
