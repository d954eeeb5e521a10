"""Train, evaluate and register the boosted next-product recommender.

Stage 1 fits implicit ALS on the holdings of the training snapshots and keeps its
closed-form projection (collaborative score of every product for any holdings vector);
stage 2 fits a multiclass ``HistGradientBoostingClassifier`` on the customers who added a
product after a training snapshot: "which product is added", from the profile, the holding
history of every product and the collaborative scores. The fitted trees are exported to
numpy arrays (:class:`core.scoring.trees.TreeEnsemble`) so the service scores a
customer without sklearn or pandas. Evaluation uses the time-based holdout with the
Santander competition's metric (MAP@7) next to the popularity baseline on the same
customers: a recommender that cannot beat "most-added products not yet held" is not worth
serving.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from core.catalogue import Catalogue
from core.moments import load_moments
from core.scoring.boosted import BoostedRecommender
from core.scoring.trees import TreeEnsemble
from core.settings import Settings
from core.tables import TIERS, Tables
from registry.holdout import HoldoutValues
from training import TrainResult
from training.datasets import DatasetError, Progress, data_fingerprint, recommender_split
from training.metrics import average_precision_at_k, map_at_k, mean_metric
from training.pair_ranker import (
    PairLayout,
    adder_inputs,
    export_pair_trees,
    fit_pair_model,
    fit_temperature,
    pair_importances,
    pair_training_rows,
)
from training.recommender_artifacts import write_artifacts
from training.recommender_data import Snapshot, align, examples, frame_inputs, held_matrix
from training.tracking import RunOptions, finish, log_time_split
from training.tree_export import average_ensembles, export_trees, split_gains

SEGMENT_LEVELS = 6
"""Most frequent needs segments kept as one-hot columns (the rest share the zero row)."""


@dataclass(frozen=True)
class RecommenderConfig:
    """Hyper-parameters and budgets; defaults suit 10k-1M customers x 12 months.

    The ranker's settings were chosen on the Santander dev panel's training months only
    (never on the target month): fitted on the transitions up to 2016-02 / 2016-03 and
    validated on the adders of 2016-03 / 2016-04, with all customers and with unseen ones
    (see ``docs/recommender.md``). 60 rounds at learning rate 0.05 with 30% of the inputs
    per split (``max_features``), leaves of at least 20 examples, ``bags`` models with
    seeds ``seed, seed + 1, ...`` averaged. ``max_iter`` x products x ``bags`` trees of at
    most ``max_leaf_nodes`` leaves. The pair ranker (``pair_*``, ``training.pair_ranker``)
    is blended in with ``pair_weight`` (0: the multiclass ranker alone).

    One bag by default: more bags gain no more than the spread between seeds on the
    validation folds and multiply the trees every request walks (``docs/decisions.md``);
    ``--param bags=3`` averages three.

    ``categorical_inputs`` are text fields one-hot encoded (their ``category_levels`` most
    frequent values); none by default: the acquisition channel and the region lowered the
    validation MAP@7 on the dev panel. ``recency_decay`` < 1 weighs older training months
    less (1: all alike; 0.6 was no better).
    """

    k: int = 7
    factors: int = 8
    als_regularization: float = 0.1
    als_alpha: float = 1.0
    als_iterations: int = 15
    max_iter: int = 60
    learning_rate: float = 0.05
    max_features: float = 0.3
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    categorical_inputs: tuple[str, ...] = ()
    category_levels: int = 12
    category_min_share: float = 0.01
    recency_decay: float = 1.0
    max_train_snapshots: int = 6
    max_train_rows: int = 60_000
    max_als_rows: int = 100_000
    bags: int = 1
    seed: int = 7
    pair_weight: float = 0.5
    pair_max_iter: int = 100
    pair_learning_rate: float = 0.1
    pair_max_leaf_nodes: int = 15
    pair_min_samples_leaf: int = 20
    max_pair_rows: int = 2_000_000


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


@dataclass(frozen=True)
class FittedRecommender:
    """The exported scorer and what the fit learned about itself."""

    scorer: BoostedRecommender
    importances: pd.Series  # split gain per input column, descending
    stats: dict[str, float]
    pair_importances: pd.Series | None = None  # the pair ranker's, per pair input


def _segments(features: pd.DataFrame) -> tuple[str, ...]:
    if "segment" not in features.columns:
        return ()
    counts = features["segment"].dropna().astype(str).value_counts()
    return tuple(counts.index[:SEGMENT_LEVELS])


def _levels(
    features: pd.DataFrame, config: RecommenderConfig
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Per categorical input, its most frequent values among the training examples (at
    most ``category_levels``, each on at least ``category_min_share`` of the examples);
    an input the bank does not publish gets no level and so no column."""
    out = []
    for name in config.categorical_inputs:
        if name not in features.columns:
            continue
        values = features[name].dropna()
        counts = values[values.map(lambda v: isinstance(v, str))].value_counts()
        common = counts[counts >= config.category_min_share * max(len(features), 1)]
        levels = tuple(str(v) for v in common.index[: config.category_levels])
        if levels:
            out.append((name, levels))
    return tuple(out)


def fit_recommender(
    snapshots: Sequence[Snapshot],
    product_ids: list[str],
    config: RecommenderConfig,
    progress: Progress | None = None,
) -> FittedRecommender:
    """Fit ALS and the boosted ranker on labelled training snapshots (oldest first)."""
    train = examples(snapshots, config.max_train_rows, config.seed, config.recency_decay)
    if len(np.unique(train.classes)) < 2:
        raise DatasetError(
            "fewer than two different products were added after the training snapshots: "
            "nothing to rank"
        )
    held = np.vstack([held_matrix(s.features, product_ids) for s in snapshots])
    if held.shape[0] > config.max_als_rows:
        pick = np.random.default_rng(config.seed).choice(
            held.shape[0], config.max_als_rows, replace=False
        )
        held = held[np.sort(pick)]
    if progress:
        progress(f"ALS on {held.shape[0]:,} customer snapshots")
    projection = projection_matrix(fit_item_factors(held, config), config.als_regularization)
    popularity = np.bincount(train.classes, weights=train.weights, minlength=len(product_ids))
    draft = BoostedRecommender(
        product_ids=list(product_ids),
        popularity=popularity / max(popularity.sum(), 1e-12),
        projection=projection,
        segments=_segments(train.features),
        tiers=tuple(TIERS),
        trees=TreeEnsemble.constant(np.zeros(len(product_ids))),
        categories=_levels(train.features, config),
    )
    x = frame_inputs(draft, train.features)
    if progress:
        progress(f"ranker on {len(train.classes):,} additions, {x.shape[1]} inputs")
    started = time.perf_counter()
    # sklearn cannot bin an all-missing column; as a constant it gets no split, so the
    # exported trees never read it and scoring a missing value there changes nothing.
    unknown = np.isnan(x).all(axis=0)
    x_fit = np.where(unknown, 0.0, x)
    models = []
    for bag in range(max(config.bags, 1)):
        model = HistGradientBoostingClassifier(
            max_iter=config.max_iter,
            learning_rate=config.learning_rate,
            max_leaf_nodes=config.max_leaf_nodes,
            min_samples_leaf=config.min_samples_leaf,
            l2_regularization=config.l2_regularization,
            max_features=config.max_features,
            early_stopping=False,
            random_state=config.seed + bag,
        )
        models.append(model.fit(x_fit, train.classes, sample_weight=train.weights))
    trees = average_ensembles([export_trees(m, len(product_ids)) for m in models])
    scorer = dataclasses.replace(draft, trees=trees)
    gains = sum(split_gains(m, x.shape[1]) for m in models) / len(models)
    importances = pd.Series(gains, index=draft.columns)
    stats = {
        "train_examples": float(len(train.classes)),
        "train_snapshots": float(len(snapshots)),
        "ranker_fit_seconds": time.perf_counter() - started,
        "ranker_trees": float(len(scorer.trees.tree_class)),
    }
    fitted = FittedRecommender(scorer, importances.sort_values(ascending=False), stats)
    if config.pair_weight:
        fitted = _with_pair_ranker(fitted, snapshots, config, progress)
    return fitted


def _with_pair_ranker(
    fitted: FittedRecommender,
    snapshots: Sequence[Snapshot],
    config: RecommenderConfig,
    progress: Progress | None,
) -> FittedRecommender:
    """``fitted`` with the pair ranker fitted and blended in (unchanged if it cannot be)."""
    scorer = fitted.scorer
    layout = PairLayout.of(scorer)
    adders = adder_inputs(scorer, snapshots)  # shared by the pair rows and the temperature
    training = pair_training_rows(adders, layout, config.max_pair_rows, config.seed)
    if progress:
        progress(f"pair ranker on {len(training.labels):,} (customer, product) rows")
    started = time.perf_counter()
    model = fit_pair_model(
        training,
        layout,
        max_iter=config.pair_max_iter,
        learning_rate=config.pair_learning_rate,
        max_leaf_nodes=config.pair_max_leaf_nodes,
        min_samples_leaf=config.pair_min_samples_leaf,
        seed=config.seed,
    )
    if model is None:
        return fitted
    pair_trees = export_pair_trees(model, layout)
    stats = {
        **fitted.stats,
        "pair_rows": float(len(training.labels)),
        "pair_fit_seconds": time.perf_counter() - started,
        "pair_trees": float(len(pair_trees.tree_class)),
    }
    blended = dataclasses.replace(scorer, pair_trees=pair_trees, pair_weight=config.pair_weight)
    temperature = fit_temperature(blended, adders, config.max_train_rows, config.seed)
    blended = dataclasses.replace(blended, blend_temperature=temperature)
    stats["blend_temperature"] = temperature
    return dataclasses.replace(
        fitted, scorer=blended, stats=stats, pair_importances=pair_importances(model, layout)
    )


def top_k(scores: np.ndarray, held: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best products not held, best first, per row (stable ties)."""
    masked = np.where(held > 0, -np.inf, scores)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


@dataclass(frozen=True)
class Evaluation:
    """Ranking metrics on one evaluation snapshot and what they were computed from."""

    metrics: dict[str, float]
    customers: pd.Index  # customers who added something (the scored population)
    ranking: np.ndarray  # (customers, k) product indices, best first
    per_product: pd.DataFrame  # recommended / hits / precision / added / recall per product
    average_precision: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    """AP@k of each customer in ``customers`` (their mean is MAP@k; the promotion gate
    bootstraps over them, ``registry.holdout``)."""


def evaluate(scorer: BoostedRecommender, snapshot: Snapshot, k: int) -> Evaluation:
    """MAP / NDCG / recall at ``k`` and catalogue coverage over the customers who added
    something, and the popularity baseline's MAP on the same customers."""
    ranked = rank_adders(scorer, snapshot, k)
    return score_rankings(scorer.product_ids, [ranked], k)


@dataclass(frozen=True)
class Ranked:
    """The adders of one evaluation snapshot, ranked by a model and by its popularity."""

    customers: pd.Index
    added: np.ndarray  # (customers, products) bool
    ranking: np.ndarray  # (customers, k) product indices, best first
    baseline: np.ndarray  # the same for the popularity baseline


def rank_adders(scorer: BoostedRecommender, snapshot: Snapshot, k: int) -> Ranked:
    """Top ``k`` products not held, by the model and by popularity, for every adder."""
    who = snapshot.added.sum(axis=1) > 0
    if not who.any():
        raise DatasetError("no customer added a product in the evaluation month")
    features = snapshot.features.iloc[np.flatnonzero(who)]
    held = held_matrix(features, scorer.product_ids)
    return Ranked(
        customers=features.index,
        added=snapshot.added[who] > 0,
        ranking=top_k(scorer.score_inputs(frame_inputs(scorer, features)), held, k),
        baseline=top_k(np.broadcast_to(scorer.popularity, held.shape), held, k),
    )


def score_rankings(product_ids: Sequence[str], parts: Sequence[Ranked], k: int) -> Evaluation:
    """Metrics over the adders of one or more rankings (cross-fitted folds are several)."""
    ranking = np.vstack([p.ranking for p in parts])
    added = np.vstack([p.added for p in parts])
    baseline = np.vstack([p.baseline for p in parts])
    customers = parts[0].customers.append([p.customers for p in parts[1:]])
    actual = [set(np.flatnonzero(row).tolist()) for row in added]
    model_lists = [row.tolist() for row in ranking]
    average_precision = np.array(
        [average_precision_at_k(a, p, k) for a, p in zip(actual, model_lists, strict=True)]
    )
    metrics = {
        f"map_at_{k}": map_at_k(actual, model_lists, k),
        f"ndcg_at_{k}": mean_metric("ndcg", actual, model_lists, k),
        f"recall_at_{k}": mean_metric("recall", actual, model_lists, k),
        f"popularity_map_at_{k}": map_at_k(actual, [r.tolist() for r in baseline], k),
        "catalogue_coverage": len(np.unique(ranking)) / len(product_ids),
        "customers": float(len(customers)),
    }
    per_product = per_product_table(product_ids, ranking, added)
    return Evaluation(metrics, customers, ranking, per_product, average_precision)


def per_product_table(
    product_ids: Sequence[str], ranking: np.ndarray, added: np.ndarray
) -> pd.DataFrame:
    """Per product: times in a top-k list, how many of those were added, precision, recall."""
    n = len(product_ids)
    rows = np.arange(ranking.shape[0])[:, None]
    hit = added[rows, ranking]
    recommended = np.bincount(ranking.ravel(), minlength=n)
    hits = np.bincount(ranking.ravel(), weights=hit.ravel().astype(float), minlength=n)
    total_added = added.sum(axis=0)
    return pd.DataFrame(
        {
            "recommended": recommended,
            "hits": hits.astype(np.int64),
            "precision": np.divide(hits, recommended, out=np.zeros(n), where=recommended > 0),
            "added": total_added,
            "recall": np.divide(hits, total_added, out=np.zeros(n), where=total_added > 0),
        },
        index=pd.Index(list(product_ids), name="product_id"),
    )


def train_recommender(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    progress: Progress | None = None,
    config: RecommenderConfig | None = None,
    options: RunOptions | None = None,
) -> TrainResult:
    """Fit, evaluate on the time-based holdout, log to MLflow and register a new version
    (``options``: experiment, run name, description, or no version at all).

    The MLflow run opens before the data is read, so a failure at any step leaves a FAILED
    run (with the data fingerprint) and no model version.
    """
    config = config or RecommenderConfig()
    options = options or RunOptions()
    registry = options.registry(settings)
    started = time.perf_counter()
    fingerprint = data_fingerprint(tables)
    params = {f"config.{k}": v for k, v in dataclasses.asdict(config).items()}
    params["catalogue_version"] = catalogue.version
    moments = load_moments(settings.moments_path)
    params["moments_version"] = moments.version
    product_ids = [p.id for p in catalogue.holdable]
    with registry.start_run(
        options.name_for("recommender", settings),
        tags={"nbo.kind": "recommender", "nbo.data_fingerprint": fingerprint},
        description=options.description,
    ) as run_id:
        registry.log_run_data(run_id, params=params)
        split = recommender_split(
            tables,
            catalogue,
            max_train_snapshots=config.max_train_snapshots,
            progress=progress,
            moments=moments,
        )
        train = [align(s.features, s.labels, product_ids) for s in split.train]
        fitted = fit_recommender(train, product_ids, config, progress)
        if progress:
            progress(f"evaluating on {split.holdout.as_of:%Y-%m-%d}")
        holdout = align(split.holdout.features, split.holdout.labels, product_ids)
        evaluation = evaluate(fitted.scorer, holdout, config.k)
        metrics = {
            **evaluation.metrics,
            **fitted.stats,
            "holdout_customers": evaluation.metrics["customers"],
            "holdout_population": float(len(holdout.features)),
        }
        metrics["train_seconds"] = time.perf_counter() - started
        dates = {
            "train_as_of": ",".join(f"{d:%Y-%m-%d}" for d in split.train_dates),
            "holdout_as_of": f"{split.holdout.as_of:%Y-%m-%d}",
            "n_features": len(fitted.scorer.feature_names),
        }
        with tempfile.TemporaryDirectory(prefix="nbo-train-") as tmp:
            artifacts = write_artifacts(fitted, evaluation, Path(tmp))
            artifacts["holdout_values"] = HoldoutValues.mean(
                f"map_at_{config.k}", evaluation.average_precision, evaluation.customers
            ).write(Path(tmp))
            if progress:
                progress("registering")
            log_time_split(
                registry,
                run_id,
                "recommender",
                fingerprint,
                settings.data_dir,
                dates,
                pd.concat([t.features for t in train]),
                holdout.features,
            )
            version = finish(
                registry,
                options,
                fitted.scorer,
                settings.recommender_model_name,
                params=dates,
                metrics=metrics,
                artifacts=artifacts,
                run_id=run_id,
                example=holdout.features.iloc[0].to_dict(),
            )
    return TrainResult.registered(
        version, run_id, metrics, {**params, **dates}, started, settings.recommender_model_name
    )
