"""Train, evaluate and register the two-stage next-product recommender.

Stage 1 fits implicit ALS on the holdings of the training snapshots; stage 2 fits a
logistic ranker on (customer, product-not-yet-held) pairs labelled "added by the next
snapshot". Both are exported into :class:`core.scoring.recommender.TwoStageRecommender`
(see its docstring for the model). Evaluation uses the time-based holdout with the
Santander competition's metric (MAP@7) next to the popularity baseline on the same
customers: a recommender that cannot beat "most-added products not yet held" is not worth
serving.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from core.catalogue import Catalogue
from core.scoring.churn import TabularDesign, column_as_float
from core.scoring.recommender import PAIR_FEATURES, TwoStageRecommender, held_column
from core.settings import Settings
from core.tables import TIERS, Tables
from registry.client import Registry
from training import TrainResult
from training.datasets import (
    DatasetError,
    LabelledSnapshot,
    Progress,
    TimeSplit,
    data_fingerprint,
    recommender_split,
)
from training.metrics import map_at_k, mean_metric

PROFILE_FEATURES = (
    "age",
    "income",
    "tenure_months",
    "risk_level",
    "n_products",
    "products_added_3m",
    "products_dropped_3m",
    "logins_3m_avg",
    "months_since_login",
    "balance",
    "balance_change_3m",
)
"""Customer features crossed with every product (besides per-product holdings)."""

SEGMENT_LEVELS = 6
"""Most frequent needs segments kept as one-hot columns (the rest share the zero row)."""

_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class RecommenderConfig:
    """Hyper-parameters and budgets; defaults suit 10k-1M customers x 12 months."""

    k: int = 7
    factors: int = 8
    als_regularization: float = 0.1
    als_alpha: float = 1.0
    als_iterations: int = 15
    ranker_c: float = 1.0
    max_train_snapshots: int = 6
    max_pairs: int = 400_000
    max_als_rows: int = 100_000
    seed: int = 7


def fit_item_factors(held: np.ndarray, config: RecommenderConfig) -> np.ndarray:
    """Implicit ALS item factors ``(products, factors)`` from a 0/1 rows x products matrix.

    BLAS is held to one thread during the fit: implicit parallelises over users itself and
    a multi-threaded BLAS underneath it oversubscribes the CPU (implicit warns about it).
    """
    user_items = sp.csr_matrix(held.astype(np.float32))
    factors = min(config.factors, held.shape[1] - 1)
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=config.als_regularization,
            alpha=config.als_alpha,
            iterations=config.als_iterations,
            random_state=config.seed,
        )
        model.fit(user_items, show_progress=False)
    return np.asarray(model.item_factors, dtype=np.float64)


def projection_matrix(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """``M = Y (Y^T Y + lambda I)^-1 Y^T``: collaborative scores for any holdings vector."""
    gram = item_factors.T @ item_factors + regularization * np.eye(item_factors.shape[1])
    return item_factors @ np.linalg.solve(gram, item_factors.T)


def customer_design(features: pd.DataFrame, product_ids: list[str]) -> TabularDesign:
    """Profile, behaviour and per-product holdings columns, fitted on training rows."""
    holdings = [f"held__{p}" for p in product_ids] + [f"months_held__{p}" for p in product_ids]
    numeric = [c for c in (*PROFILE_FEATURES, *holdings) if c in features.columns]
    segments = features["segment"].dropna().astype(str).value_counts()
    return TabularDesign.fit(
        features,
        numeric,
        {"tier": list(TIERS), "segment": list(segments.index[:SEGMENT_LEVELS])},
    )


def _matrix(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    values = np.column_stack([column_as_float(features[c]) for c in columns])
    return (np.nan_to_num(values, nan=0.0) > 0).astype(np.float64)


def _sample_pairs(
    candidates: np.ndarray, labels: np.ndarray, max_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, product, weight) of the pairs the ranker learns from.

    Every positive pair is kept; negatives are sampled down to the budget and weighted by
    the inverse sampling rate, so the fitted probabilities stay on the true scale.
    """
    rows, prods = np.nonzero(candidates)  # row-major: rows come out sorted
    positive = labels[rows, prods] > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    rate = min(1.0, max(max_pairs - n_pos, 1) / max(n_neg, 1))
    keep = positive | (np.random.default_rng(seed).random(len(rows)) < rate)
    weights = np.where(positive, 1.0, 1.0 / rate)
    return rows[keep], prods[keep], weights[keep]


def _pair_inputs(
    draft: TwoStageRecommender,
    features: pd.DataFrame,
    held: np.ndarray,
    dropped: np.ndarray,
    rows: np.ndarray,
    prods: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw pair features and standardized customer rows of the sampled pairs.

    Computed block by block of customers with the scorer's own code (``pair_matrix``,
    ``transform_frame``), so training sees exactly what serving computes, without holding
    a full customers x products x products array in memory. ``rows`` must be sorted.
    """
    design = draft.customer_design
    raw, categories = design.raw_frame(features), design.categories_frame(features)
    raw_pairs = np.empty((len(rows), len(PAIR_FEATURES)))
    z_customer = np.empty((len(rows), len(design.columns)))
    for start in range(0, held.shape[0], _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        sel = slice(np.searchsorted(rows, start), np.searchsorted(rows, stop))
        local = rows[sel] - start
        block = draft.pair_matrix(held[start:stop], dropped[start:stop])
        raw_pairs[sel] = block[local, prods[sel]]
        z_customer[sel] = design.standardize(raw[start:stop], categories[start:stop])[local]
    return raw_pairs, z_customer


def fit_recommender(
    split: TimeSplit,
    catalogue: Catalogue,
    config: RecommenderConfig,
    progress: Progress | None = None,
) -> tuple[TwoStageRecommender, dict[str, float]]:
    """Fit both stages on the training snapshots; return the scorer and fit statistics."""
    product_ids = [p.id for p in catalogue.holdable]
    features = split.train_features()
    labels = split.train_labels()[product_ids].to_numpy(np.float64)
    held = _matrix(features, [held_column(p) for p in product_ids])
    candidates = held == 0
    if not (labels[candidates] > 0).any():
        raise DatasetError(
            f"no product was added after any training snapshot "
            f"({', '.join(f'{d:%Y-%m-%d}' for d in split.train_dates)}): nothing to learn"
        )
    # Item factors need the co-holding structure, not every customer: a sample suffices.
    als_rows = held
    if held.shape[0] > config.max_als_rows:
        pick = np.random.default_rng(config.seed).choice(
            held.shape[0], config.max_als_rows, replace=False
        )
        als_rows = held[np.sort(pick)]
    if progress:
        progress(f"ALS on {als_rows.shape[0]:,} customer snapshots")
    projection = projection_matrix(fit_item_factors(als_rows, config), config.als_regularization)
    popularity = labels.mean(axis=0)

    if progress:
        progress("ranker features")
    design = customer_design(features, product_ids)
    d, n_products = len(design.columns), len(product_ids)
    draft = TwoStageRecommender(
        product_ids=product_ids,
        popularity=popularity,
        projection=projection,
        customer_design=design,
        interaction_weights=np.zeros((n_products, d)),
        pair_mean=np.zeros(len(PAIR_FEATURES)),
        pair_scale=np.ones(len(PAIR_FEATURES)),
        pair_weights=np.zeros(len(PAIR_FEATURES)),
        intercept=0.0,
    )
    rows, prods, weights = _sample_pairs(candidates, labels, config.max_pairs, config.seed)
    dropped = _matrix(features, [f"dropped__{p}" for p in product_ids])
    raw_pairs, z_customer = _pair_inputs(draft, features, held, dropped, rows, prods)
    pair_mean = raw_pairs.mean(axis=0)
    pair_scale = raw_pairs.std(axis=0)
    pair_scale = np.where(pair_scale > 1e-12, pair_scale, 1.0)
    z_pairs = (raw_pairs - pair_mean) / pair_scale

    # One sparse row per pair: 3 shared pair columns, then the customer row placed in the
    # block of its product (product one-hot crossed with the customer features).
    width = len(PAIR_FEATURES) + d
    data = np.hstack([z_pairs, z_customer])
    indices = np.hstack(
        [
            np.broadcast_to(np.arange(len(PAIR_FEATURES)), (len(rows), len(PAIR_FEATURES))),
            len(PAIR_FEATURES) + prods[:, None] * d + np.arange(d)[None, :],
        ]
    )
    design_matrix = sp.csr_matrix(
        (data.ravel(), indices.ravel(), np.arange(0, len(rows) * width + 1, width)),
        shape=(len(rows), len(PAIR_FEATURES) + n_products * d),
    )
    target = labels[rows, prods]
    if progress:
        progress(f"ranker on {len(rows):,} pairs ({int(target.sum()):,} additions)")
    ranker = LogisticRegression(C=config.ranker_c, max_iter=500)
    ranker.fit(design_matrix, target, sample_weight=weights)
    coef = ranker.coef_[0]
    scorer = dataclasses.replace(
        draft,
        pair_mean=pair_mean,
        pair_scale=pair_scale,
        pair_weights=coef[: len(PAIR_FEATURES)].copy(),
        interaction_weights=coef[len(PAIR_FEATURES) :].reshape(n_products, d).copy(),
        intercept=float(ranker.intercept_[0]),
    )
    stats = {
        "train_rows": float(held.shape[0]),
        "train_pairs": float(len(rows)),
        "train_additions": float(target.sum()),
        "ranker_iterations": float(ranker.n_iter_[0]),
    }
    return scorer, stats


def top_k(scores: np.ndarray, held: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best products not held, best first, per row (stable ties)."""
    masked = np.where(held > 0, -np.inf, scores)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def evaluate_recommender(
    scorer: TwoStageRecommender, holdout: LabelledSnapshot, k: int
) -> dict[str, float]:
    """MAP / NDCG / recall at ``k`` over holdout customers who added something, and the
    popularity baseline's MAP on the same customers."""
    ids = np.array(scorer.product_ids)
    added = holdout.labels[scorer.product_ids].to_numpy() > 0
    who = added.any(axis=1)
    if not who.any():
        raise DatasetError(f"nobody added a product after the holdout {holdout.as_of:%Y-%m-%d}")
    features = holdout.features.iloc[np.flatnonzero(who)]
    held = _matrix(features, [held_column(p) for p in scorer.product_ids])
    actual = [set(ids[row]) for row in added[who]]
    model = [list(ids[r]) for r in top_k(scorer.score_frame(features), held, k)]
    popular = np.broadcast_to(scorer.popularity, held.shape)
    baseline = [list(ids[r]) for r in top_k(popular, held, k)]
    return {
        f"map_at_{k}": map_at_k(actual, model, k),
        f"ndcg_at_{k}": mean_metric("ndcg", actual, model, k),
        f"recall_at_{k}": mean_metric("recall", actual, model, k),
        f"popularity_map_at_{k}": map_at_k(actual, baseline, k),
        "holdout_customers": float(len(actual)),
        "holdout_population": float(len(holdout.features)),
    }


def train_recommender(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    progress: Progress | None = None,
    config: RecommenderConfig | None = None,
) -> TrainResult:
    """Fit, evaluate on the time-based holdout, log to MLflow and register a new version.

    The MLflow run opens before the data is read, so a failure at any step leaves a FAILED
    run (with the data fingerprint) and no model version.
    """
    config = config or RecommenderConfig()
    registry = Registry(settings)
    started = time.perf_counter()
    fingerprint = data_fingerprint(tables)
    params = {f"config.{k}": v for k, v in dataclasses.asdict(config).items()}
    params["catalogue_version"] = catalogue.version
    with registry.start_run(
        "recommender", tags={"nbo.kind": "recommender", "nbo.data_fingerprint": fingerprint}
    ) as run_id:
        registry.log_run_data(run_id, params=params)
        split = recommender_split(
            tables, catalogue, max_train_snapshots=config.max_train_snapshots, progress=progress
        )
        scorer, stats = fit_recommender(split, catalogue, config, progress)
        if progress:
            progress(f"evaluating on {split.holdout.as_of:%Y-%m-%d}")
        metrics = {**evaluate_recommender(scorer, split.holdout, config.k), **stats}
        metrics["train_seconds"] = time.perf_counter() - started
        dates = {
            "train_as_of": ",".join(f"{d:%Y-%m-%d}" for d in split.train_dates),
            "holdout_as_of": f"{split.holdout.as_of:%Y-%m-%d}",
            "n_features": len(scorer.feature_names),
        }
        with tempfile.TemporaryDirectory(prefix="nbo-train-") as tmp:
            names = Path(tmp) / "feature_names.json"
            names.write_text(json.dumps(scorer.feature_names, indent=1))
            if progress:
                progress("registering")
            version = registry.log_and_register(
                scorer,
                settings.recommender_model_name,
                params=dates,
                metrics=metrics,
                tags={"nbo.feature_names": ",".join(scorer.feature_names)},
                artifacts={"feature_names": names},
                run_id=run_id,
            )
    return TrainResult(
        model_name=version.name,
        version=version.version,
        run_id=run_id,
        metrics=metrics,
        params={**{k: str(v) for k, v in params.items()}, **{k: str(v) for k, v in dates.items()}},
        seconds=time.perf_counter() - started,
    )
