"""Who a model learns from and scores: the customers of the bank, not those who left.

The feature set keeps customers who left within the win-back window (``departed`` true,
lifecycle stage ``churned``) so that the service can offer them a way back. A model must
not learn from them: a departed customer cannot churn again (a churn label of 0 would be
a false "stayer") and adds no product (no recommender label). Every training, evaluation
and batch-scoring population therefore comes through :func:`training_features`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

import pandas as pd

from core.catalogue import Catalogue
from core.moments import MomentsConfig
from core.tables import Tables
from features.pointintime import compute_features


def without_departed(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` minus the rows of customers who had left at the feature date."""
    if "departed" not in features.columns:
        return features
    return features[~features["departed"].fillna(False).astype(bool).to_numpy()]


def training_features(
    tables: Tables,
    as_of: date,
    catalogue: Catalogue,
    moments: MomentsConfig | None = None,
    names: Collection[str] | None = None,
) -> pd.DataFrame:
    """Point-in-time features of the customers still with the bank at ``as_of``.

    ``names``: only these features (``departed`` is computed too, to drop those who left).
    """
    wanted = None if names is None else [*names, "departed"]
    return without_departed(compute_features(tables, as_of, catalogue, moments, wanted))
