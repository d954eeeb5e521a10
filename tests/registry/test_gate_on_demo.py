"""The default margin lets equally good models through on the demo bank (slow: it trains).

The demo bank (20,000 customers x 12 months, seed 7) is trained with three churn
configurations and two recommender seeds; versions that differ only in a seed or a
regularisation constant are equally good models, so the default ``NBO_PROMOTION_MARGIN``
must find every later one non-inferior to the first on the paired bootstrap. Prints the
findings (the figures of docs/lifecycle.md):

    pytest -m slow tests/registry/test_gate_on_demo.py -s
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.catalogue import Catalogue
from core.settings import Settings
from features.synthetic import generate_bank
from registry.client import Registry
from registry.compare import compare
from training.churn import ChurnConfig, train_churn
from training.recommender import RecommenderConfig, train_recommender

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def test_equally_good_versions_pass_the_default_margin(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    bank = generate_bank(20_000, 12, 7, catalogue, date(2026, 11, 30))
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db")
    registry = Registry(settings)
    churn = [
        train_churn(bank, catalogue, settings, config=config)
        for config in (ChurnConfig(), ChurnConfig(c=0.05), ChurnConfig(calibration_share=0.5))
    ]
    recommender = [
        train_recommender(bank, catalogue, settings, config=RecommenderConfig(seed=seed))
        for seed in (7, 8)
    ]
    for runs in (churn, recommender):
        first = runs[0]
        for other in runs[1:]:
            gate = compare(registry, first.model_name, first.version, other.version).gate
            assert gate is not None and gate.method == "paired bootstrap"
            print(f"{first.model_name} v{other.version} vs v{first.version}: {gate.describe()}")
            assert gate.margin == settings.promotion_margin
            assert gate.non_inferior, gate.describe()
