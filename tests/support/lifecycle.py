"""A registry with several versions for the model-lifecycle tests (hot reload, cache, outage).

Recommender version 1 ranks products by rising popularity (the catalogue read backwards),
version 2 by falling popularity, version 3 reads a feature no feature set has, version 4's
artifact is corrupt; churn version 1. Both version 1s are champions.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import redis

from core.catalogue import Catalogue, load_catalogue
from core.scoring.churn import TabularDesign
from core.scoring.legacy import TwoStageRecommender
from core.settings import PACKAGE_DIR, Settings
from features.online_store import FeatureSetInfo
from registry.client import Registry
from tests.support.records import publish_records
from tests.support.registry import migrate
from tests.support.scorers import login_churn_model, popularity_recommender
from tests.support.served import AS_OF, CUSTOMERS, record

REC, CHURN = "nbo-recommender", "nbo-churn"


def reversed_recommender(catalogue: Catalogue) -> TwoStageRecommender:
    base = popularity_recommender(catalogue)
    return dataclasses.replace(base, popularity=base.popularity[::-1].copy())


def unknown_input_recommender(catalogue: Catalogue) -> TwoStageRecommender:
    """Reads a feature the live feature set does not have: must be refused."""
    base = popularity_recommender(catalogue)
    n = len(base.product_ids)
    design = TabularDesign(("secret_score",), (), (), np.zeros(1), np.zeros(1), np.ones(1))
    return dataclasses.replace(base, customer_design=design, interaction_weights=np.zeros((n, 1)))


@cache
def seeded_lifecycle_store() -> Path:
    """Recommender v1 (champion), v2 (reversed), v3 (unknown input), v4 (corrupt artifact);
    churn v1 (champion). Built once per test process; tests copy the database, so alias
    moves stay per test (the artifacts are shared and read-only)."""
    catalogue = load_catalogue(PACKAGE_DIR / "catalogue.yaml")
    root = Path(tempfile.mkdtemp(prefix="nbo-reload-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    db = migrate(root / "template.db")
    registry = Registry(Settings(home=root / "home", mlflow_tracking_uri=f"sqlite:///{db}"))
    for scorer in (
        popularity_recommender(catalogue),
        reversed_recommender(catalogue),
        unknown_input_recommender(catalogue),
        popularity_recommender(catalogue),
    ):
        registry.log_and_register(scorer, REC)
    registry.log_and_register(login_churn_model(), CHURN)
    registry.promote(REC, 1)
    registry.promote(CHURN, 1)
    uri = registry.client.get_model_version_download_uri(REC, "4")
    corrupt = Path(uri.removeprefix("file://")) / "artifacts" / "scorer.pkl"
    corrupt.write_bytes(b"not a pickle")
    return db


def lifecycle_settings(settings: Settings, tmp_path: Path) -> Settings:
    """``settings`` on a copy of the seeded store, polling off (``/admin/reload`` only)."""
    db = tmp_path / "reload.db"
    db.write_bytes(seeded_lifecycle_store().read_bytes())
    return settings.model_copy(
        update={"mlflow_tracking_uri": f"sqlite:///{db}", "model_poll_seconds": 0.0}
    )


def publish_full(
    settings: Settings,
    client: redis.Redis,
    catalogue: Catalogue,
    customers: dict[str, dict[str, Any]] = CUSTOMERS,
) -> FeatureSetInfo:
    """Publish ``customers`` with feature names that include the holdings columns."""
    model = popularity_recommender(catalogue)
    names = set(record()) | set(model.feature_names)
    return publish_records(settings, client, catalogue, customers, as_of=AS_OF, feature_names=names)
