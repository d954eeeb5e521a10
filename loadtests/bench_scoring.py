"""Benchmark: training time and per-request scoring latency (``make bench``).

Trains the production recommender on the Santander dev panel (or, without it, on a
synthetic bank), then times ``--requests`` single-customer requests (10,000 by default):
``score(record)`` alone, and the work the service does per request: ``prepare(record)``
(one input row, one walk of every tree, the scores), then its ``reasons`` for the three
best products not held. The last line times the same with the multiclass ranker alone
(``pair_weight`` 0: no pair-ranker trees walked), in the same run, so the pair ranker's
cost reads as a ratio. The trees are walked by the numba-compiled walk (compiled, or
loaded from numba's cache, once before the timings). Prints figures; asserts nothing
(timings depend on the machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from datetime import date
from pathlib import Path

import numpy as np

from core.catalogue import load_catalogue
from core.settings import get_settings
from features.pointintime import compute_features, to_records
from features.santander import import_santander
from features.synthetic import generate_bank
from training.evaluate_recommender import evaluate_tables
from training.labels import snapshot_months

PANEL = Path(os.environ.get("NBO_SHARED_DATA", "../shared/data")) / (
    "santander/panel_2015-12_to_2016-05.csv.gz"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", type=Path, default=PANEL)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    catalogue = load_catalogue(get_settings().catalogue_path)
    if args.panel.exists():
        tables = import_santander(args.panel, catalogue).tables
        source = str(args.panel)
    else:
        tables = generate_bank(20_000, 8, 7, catalogue, date(2025, 12, 31))
        source = "synthetic bank, 20,000 customers x 8 months"
    months = snapshot_months(tables)
    started = time.perf_counter()
    result = evaluate_tables(tables, catalogue, months[-2].date(), months[-1].date())
    train_seconds = time.perf_counter() - started
    scorer = result.fitted.scorer
    records = [r for _, r in to_records(compute_features(tables, months[-2].date(), catalogue))]
    scorer.prepare(records[0]).reasons([0, 1, 2])  # numba: compile or load the cache
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(records), args.requests)
    alone = dataclasses.replace(scorer, pair_weight=0.0)
    score_only = np.empty(args.requests)
    names = ("prepared", "mc alone")
    latencies = {name: np.empty(args.requests) for name in names}
    for i, pick in enumerate(picks):
        record = records[pick]
        t0 = time.perf_counter()
        scores = scorer.score(record)
        score_only[i] = time.perf_counter() - t0
        held = {p for p in record.get("held") or ()}
        order = [int(j) for j in np.argsort(-scores) if scorer.product_ids[j] not in held][:3]
        t0 = time.perf_counter()
        prepared = scorer.prepare(record)
        prepared.reasons(order)
        latencies["prepared"][i] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = alone.prepare(record)
        prepared.reasons(order)
        latencies["mc alone"][i] = time.perf_counter() - t0
    m = result.evaluation.metrics
    print(f"data                 {source}")
    print(f"trees                {len(scorer.trees.tree_class)} (depth <= {scorer.trees.depth})")
    if scorer.pair_trees is not None:
        pair = scorer.pair_trees
        print(f"pair-ranker trees    {len(pair.tree_class)} (depth <= {pair.depth})")
    print(f"train + evaluate     {train_seconds:.1f} s  (MAP@7 {m['map_at_7']:.4f})")
    print(
        f"score only           p50 {np.percentile(score_only, 50) * 1e3:.2f} ms  "
        f"p99 {np.percentile(score_only, 99) * 1e3:.2f} ms"
    )
    for name, values in latencies.items():
        print(
            f"score + 3 reasons ({name:9s}) p50 {np.percentile(values, 50) * 1e3:.2f} ms  "
            f"p99 {np.percentile(values, 99) * 1e3:.2f} ms  over {args.requests:,} requests"
        )


if __name__ == "__main__":
    main()
