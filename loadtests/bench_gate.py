"""Benchmark: how wide the promotion gate's interval is on a real holdout, and what it costs.

Generates the demo bank (``--customers`` x ``--months``, ``--seed``), trains churn with
three configurations and the recommender with two seeds into a temporary MLflow store, and
prints the gate's finding (``registry.compare``) for each later version against the first,
with the seconds the bootstrap took. Versions that differ only in a seed or a
regularisation constant are equally good models: the interval says how far apart two such
models can look on this holdout, i.e. how large ``NBO_PROMOTION_MARGIN`` must be for the gate
to let them through. Prints figures; asserts nothing.

Example: python -m loadtests.bench_gate --customers 20000 --months 12 --seed 7
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from core.catalogue import load_catalogue
from core.settings import PACKAGE_DIR, Settings
from features.synthetic import generate_bank
from registry.client import Registry
from registry.compare import compare
from training.churn import ChurnConfig, train_churn
from training.recommender import RecommenderConfig, train_recommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-month", type=date.fromisoformat, default=date(2026, 11, 30))
    args = parser.parse_args()
    catalogue = load_catalogue(PACKAGE_DIR / "catalogue.yaml")
    bank = generate_bank(args.customers, args.months, args.seed, catalogue, args.end_month)
    with tempfile.TemporaryDirectory(prefix="nbo-bench-gate-") as tmp:
        settings = Settings(home=Path(tmp) / "home", mlflow_tracking_uri=f"sqlite:///{tmp}/m.db")
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
                started = time.perf_counter()
                gate = compare(registry, first.model_name, first.version, other.version).gate
                seconds = time.perf_counter() - started
                finding = gate.describe() if gate else "not comparable"
                print(
                    f"{first.model_name} v{other.version} vs v{first.version}: {finding} "
                    f"[{seconds:.1f} s]"
                )


if __name__ == "__main__":
    main()
