"""Train, evaluate and register the churn model (calibrated logistic regression).

The logistic regression is fitted on most training customers and the isotonic calibration
on the rest (split by customer, so a customer's rows never sit on both sides); both are
exported into :class:`core.scoring.churn.LinearChurnModel`. Evaluation on the time-based
holdout reports what the retention team relies on: ranking (ROC-AUC, PR-AUC, churn rate in
the top decile) and calibration (Brier score, and a calibration plot and table of predicted
vs observed churn in bins, logged as MLflow artifacts next to the model, with a plot of the
largest standardized coefficients).

"Products maturing soon" is a churn signal banks use (a retention offer about 7 days before
a deposit matures); the churn model does not read it: whether a maturing deposit's money
leaves is the maturity outflow model's question (``training/maturity.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from core.catalogue import Catalogue
from core.moments import load_moments
from core.scoring.churn import LinearChurnModel, TabularDesign
from core.settings import Settings
from core.tables import TIERS, Tables
from registry.holdout import HoldoutValues
from training import TrainResult
from training.datasets import (
    DatasetError,
    LabelledSnapshot,
    Progress,
    churn_split,
    data_fingerprint,
)
from training.importance_plots import coefficient_plot
from training.tracking import RunOptions, finish, log_time_split

CHURN_FEATURES = (
    "months_since_login",
    "login_trend",
    "logins_1m",
    "logins_3m_avg",
    "balance",
    "balance_change_1m",
    "balance_change_3m",
    "net_flow_1m",
    "net_flow_3m",
    "products_dropped_3m",
    "products_added_3m",
    "n_products",
    "tenure_months",
    "age",
    "income",
)
"""Behaviour, holdings and profile signals the churn model reads (where present)."""


@dataclass(frozen=True)
class ChurnConfig:
    """Hyper-parameters; ``calibration_share`` of customers calibrate instead of fit."""

    c: float = 1.0
    calibration_share: float = 0.25
    max_train_snapshots: int = 6


def _calibration_mask(customer_ids: pd.Index, share: float) -> np.ndarray:
    """A stable pseudo-random customer split (hash of the id), the same on every run."""
    buckets = np.array(
        [int(hashlib.blake2b(str(c).encode(), digest_size=4).hexdigest(), 16) for c in customer_ids]
    )
    return (buckets % 1000) < share * 1000


def fit_churn(
    snapshots: list[LabelledSnapshot], horizon_months: int, config: ChurnConfig
) -> LinearChurnModel:
    """Fit standardization, the logistic regression and its isotonic calibration."""
    features = pd.concat([s.features for s in snapshots])
    target = pd.concat([s.labels["churned"] for s in snapshots]).to_numpy()
    if target.min() == target.max():
        raise DatasetError(
            f"every training label is {int(target[0])} "
            f"(as-of {', '.join(f'{s.as_of:%Y-%m-%d}' for s in snapshots)}): "
            "churn needs both churners and stayers"
        )
    calibrate = _calibration_mask(features.index, config.calibration_share)
    fit_rows = features[~calibrate]
    numeric = [c for c in CHURN_FEATURES if c in features.columns]
    design = TabularDesign.fit(fit_rows, numeric, {"tier": list(TIERS)})
    regression = LogisticRegression(C=config.c, max_iter=1000)
    regression.fit(design.transform_frame(fit_rows), target[~calibrate])
    model = LinearChurnModel(
        design=design,
        weights=regression.coef_[0].copy(),
        intercept=float(regression.intercept_[0]),
        calibration_x=np.array([0.0, 1.0]),
        calibration_y=np.array([0.0, 1.0]),
        horizon_months=horizon_months,
    )
    if calibrate.sum() and target[calibrate].min() != target[calibrate].max():
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        isotonic.fit(model.raw_proba_frame(features[calibrate]), target[calibrate])
        model = dataclasses.replace(
            model,
            calibration_x=np.asarray(isotonic.X_thresholds_, dtype=np.float64),
            calibration_y=np.asarray(isotonic.y_thresholds_, dtype=np.float64),
        )
    return model


def calibration_table(target: np.ndarray, proba: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Predicted vs observed churn rate in equal-count bins of the predicted probability."""
    order = np.argsort(proba, kind="stable")
    rows = []
    for part in np.array_split(order, min(bins, len(order))):
        if part.size:
            rows.append(
                {
                    "customers": int(part.size),
                    "predicted": float(proba[part].mean()),
                    "observed": float(target[part].mean()),
                }
            )
    return pd.DataFrame(rows)


def calibration_plot(table: pd.DataFrame, brier: float, path: Path) -> Path:
    """Reliability diagram (matplotlib, headless) of a :func:`calibration_table`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        top = max(float(table[["predicted", "observed"]].to_numpy().max()), 0.05) * 1.05
        ax.plot([0, top], [0, top], linestyle="--", color="grey", label="perfect")
        ax.plot(table["predicted"], table["observed"], marker="o", label="model")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("predicted churn probability (bin mean)")
        ax.set_ylabel("observed churn rate")
        ax.set_title(f"Churn calibration on the holdout (Brier {brier:.4f})")
        ax.legend(loc="upper left")
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def evaluate_churn(model: LinearChurnModel, holdout: LabelledSnapshot) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier and top-decile churn rate of the calibrated probabilities."""
    target = holdout.labels["churned"].to_numpy()
    if target.min() == target.max():
        raise DatasetError(f"holdout {holdout.as_of:%Y-%m-%d} has only label {int(target[0])}")
    proba = model.predict_frame(holdout.features)
    top = np.argsort(-proba, kind="stable")[: max(1, len(proba) // 10)]
    return {
        "roc_auc": float(roc_auc_score(target, proba)),
        "pr_auc": float(average_precision_score(target, proba)),
        "brier": float(brier_score_loss(target, proba)),
        "top_decile_churn_rate": float(target[top].mean()),
        "holdout_churn_rate": float(target.mean()),
        "holdout_customers": float(len(target)),
    }


def train_churn(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    progress: Progress | None = None,
    config: ChurnConfig | None = None,
    options: RunOptions | None = None,
) -> TrainResult:
    """Fit, evaluate on the time-based holdout, log to MLflow and register a new version
    (``options``: experiment, run name, description, or no version at all).

    As for the recommender, a failure after the run opens leaves a FAILED run and no version.
    """
    config = config or ChurnConfig()
    options = options or RunOptions()
    registry = options.registry(settings)
    started = time.perf_counter()
    horizon = settings.churn_horizon_months
    params: dict[str, object] = {f"config.{k}": v for k, v in dataclasses.asdict(config).items()}
    moments = load_moments(settings.moments_path)
    params.update(
        horizon_months=horizon,
        catalogue_version=catalogue.version,
        moments_version=moments.version,
    )
    fingerprint = data_fingerprint(tables)
    tags = {"nbo.kind": "churn", "nbo.data_fingerprint": fingerprint}
    with registry.start_run(
        options.name_for("churn", settings), tags=tags, description=options.description
    ) as run_id:
        registry.log_run_data(run_id, params=params)
        split = churn_split(
            tables,
            catalogue,
            horizon,
            max_train_snapshots=config.max_train_snapshots,
            progress=progress,
            moments=moments,
        )
        if progress:
            progress(f"fitting on {sum(len(s.features) for s in split.train):,} rows")
        model = fit_churn(split.train, horizon, config)
        if progress:
            progress(f"evaluating on {split.holdout.as_of:%Y-%m-%d}")
        metrics = evaluate_churn(model, split.holdout)
        metrics["train_rows"] = float(sum(len(s.features) for s in split.train))
        metrics["train_seconds"] = time.perf_counter() - started
        dates = {
            "train_as_of": ",".join(f"{d:%Y-%m-%d}" for d in split.train_dates),
            "holdout_as_of": f"{split.holdout.as_of:%Y-%m-%d}",
            "n_features": len(model.feature_names),
        }
        holdout_target = split.holdout.labels["churned"].to_numpy()
        holdout_proba = model.predict_frame(split.holdout.features)
        table = calibration_table(holdout_target, holdout_proba)
        with tempfile.TemporaryDirectory(prefix="nbo-train-") as tmp:
            names = Path(tmp) / "feature_names.json"
            names.write_text(json.dumps(model.feature_names, indent=1))
            table_path = Path(tmp) / "calibration.csv"
            table.to_csv(table_path, index=False)
            plot = calibration_plot(table, metrics["brier"], Path(tmp) / "calibration.png")
            per_row = HoldoutValues.auc(
                "roc_auc", holdout_target, holdout_proba, split.holdout.features.index
            ).write(Path(tmp))
            importance = coefficient_plot(
                model.design.columns,
                model.weights,
                Path(tmp) / "feature_importance.png",
                "Churn model: largest standardized coefficients",
            )
            if progress:
                progress("registering")
            training = pd.concat([s.features for s in split.train])
            log_time_split(
                registry,
                run_id,
                "churn",
                fingerprint,
                settings.data_dir,
                dates,
                training,
                split.holdout.features,
            )
            version = finish(
                registry,
                options,
                model,
                settings.churn_model_name,
                params=dates,
                metrics=metrics,
                artifacts={
                    "feature_names": names,
                    "calibration": table_path,
                    "plots": plot,
                    "holdout_values": per_row,
                    "feature_importance": importance,
                },
                run_id=run_id,
                example=split.holdout.features.iloc[0].to_dict(),
            )
    return TrainResult.registered(
        version, run_id, metrics, {**params, **dates}, started, settings.churn_model_name
    )
