"""Train, evaluate and register the maturity outflow model (calibrated logistic regression).

Why: a deposit's money is most at risk when it matures; the bank starts a retention offer a
week before, for the contracts whose money is likely to leave. The model predicts, for a
contract listed in a record's ``maturities`` field, the probability that its money leaves
the bank within 30 days after maturity.

Point in time: an example is one term deposit at the last month-end snapshot ``T`` before
its maturity (loans are listed in ``maturities`` too, but their maturity moves no savings);
its inputs come from the record computed at ``T`` (``compute_features``, which sees nothing
after ``T``) through the very function the service uses
(:func:`core.scoring.maturity.contract_inputs`); its label from the contracts table, i.e.
later data: outcome ``left`` with ``closed_on`` no later than maturity + 30 days. Only
contracts whose 30-day window ends within the data are used. Split by time: the last
``holdout_snapshots`` snapshots with examples are the holdout, the ones before train.

Model: scikit-learn ``CalibratedClassifierCV`` (Platt sigmoid fitted on the ``folds``-fold
out-of-fold scores, ``ensemble=False``: one regression fitted on all training rows, so one
dot product per contract at serving) around a ``LogisticRegression`` on standardized,
median-imputed inputs; exported into
:class:`core.scoring.maturity.MaturityOutflowModel`, whose probabilities are the
classifier's ``predict_proba`` (tested to 1e-9). Logged and registered in MLflow as
``Settings.maturity_model_name`` with run tag ``nbo.kind=maturity`` (promotion gate on
ROC-AUC, ``registry.promotion``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from core.catalogue import Catalogue
from core.scoring.maturity import (
    DEPOSIT_PRODUCTS,
    INPUT_NAMES,
    OUTFLOW_WINDOW_DAYS,
    MaturityOutflowModel,
    PlattFold,
    contract_inputs,
)
from core.settings import Settings
from core.tables import Tables
from features.contract_features import contract_key
from features.pointintime import compute_features, to_records
from registry.holdout import HoldoutValues
from training import TrainResult
from training.churn import calibration_table
from training.datasets import DatasetError, Progress, data_fingerprint
from training.labels import data_end, snapshot_months
from training.tracking import RunOptions, finish, log_time_split


@dataclass(frozen=True)
class MaturityConfig:
    """Hyper-parameters and the split: ``holdout_snapshots`` last snapshots are held out."""

    c: float = 1.0
    folds: int = 5
    holdout_snapshots: int = 3
    min_history: int = 3


@dataclass(frozen=True)
class MaturityExamples:
    """One row per contract: raw inputs (``INPUT_NAMES``), label, snapshot date."""

    inputs: np.ndarray  # (rows, len(INPUT_NAMES)) float, NaN where unknown
    labels: np.ndarray  # (rows,) 0/1
    as_of: np.ndarray  # (rows,) datetime64[ns]: the snapshot the inputs are from


@dataclass(frozen=True)
class MaturitySplit:
    train: MaturityExamples
    holdout: MaturityExamples
    train_dates: list[pd.Timestamp]
    holdout_dates: list[pd.Timestamp]


def _labels_by_key(contracts: pd.DataFrame) -> dict[str, int]:
    """Pseudonymous contract key -> 1 when its money left within the window, else 0."""
    window = pd.Timedelta(days=OUTFLOW_WINDOW_DAYS)
    left = (contracts["outcome"] == "left") & (
        pd.to_datetime(contracts["closed_on"])
        <= pd.to_datetime(contracts["maturity_date"]) + window
    )
    return {
        contract_key(str(c)): int(v)
        for c, v in zip(contracts["contract_id"], left.to_numpy(), strict=True)
    }


def maturity_examples(
    tables: Tables,
    catalogue: Catalogue,
    *,
    min_history: int = 3,
    progress: Progress | None = None,
) -> MaturityExamples:
    """Every usable (contract, snapshot) example of the tables (see the module docstring)."""
    if tables.contracts.empty:
        raise DatasetError(
            "the contracts table is empty (e.g. the Santander data, which publish no contract "
            "dates): the maturity model has nothing to learn from"
        )
    months = snapshot_months(tables)
    last_window = data_end(tables) - pd.Timedelta(days=OUTFLOW_WINDOW_DAYS)
    labels = _labels_by_key(tables.contracts)
    inputs: list[list[float]] = []
    targets: list[int] = []
    dates: list[pd.Timestamp] = []
    for k, as_of in enumerate(months[min_history:], start=min_history):
        if k + 1 >= len(months) or as_of >= last_window:
            continue  # no contract maturing after this snapshot has a complete window
        following = months[k + 1]
        if progress is not None:
            progress(f"features and labels at {as_of:%Y-%m-%d}")
        frame = compute_features(tables, as_of.date(), catalogue)
        frame = frame[frame["maturities"].map(len) > 0]
        for _, record in to_records(frame):
            entries = cast(list[dict[str, Any]], record["maturities"])
            for contract in entries:
                if contract["product"] not in DEPOSIT_PRODUCTS:
                    continue  # a loan's maturity moves no savings: not this model's question
                maturity = pd.Timestamp(contract["maturity_date"])
                # Each contract once: at the last snapshot before it matures.
                if maturity > following or maturity > last_window:
                    continue
                inputs.append(contract_inputs(record, contract))
                targets.append(labels[contract["contract"]])
                dates.append(as_of)
    if not inputs:
        raise DatasetError("no contract matures inside the data with a complete 30-day window")
    return MaturityExamples(
        inputs=np.array(inputs, dtype=np.float64),
        labels=np.array(targets, dtype=np.int64),
        as_of=np.array(dates, dtype="datetime64[ns]"),
    )


def _subset(examples: MaturityExamples, mask: np.ndarray) -> MaturityExamples:
    return MaturityExamples(examples.inputs[mask], examples.labels[mask], examples.as_of[mask])


def time_split(examples: MaturityExamples, holdout_snapshots: int) -> MaturitySplit:
    """The last ``holdout_snapshots`` snapshot dates hold out; the earlier ones train."""
    dates = sorted(pd.Timestamp(d) for d in np.unique(examples.as_of))
    if len(dates) <= holdout_snapshots:
        raise DatasetError(
            f"maturity: {len(dates)} snapshot(s) with maturing contracts; need more than the "
            f"{holdout_snapshots} held out"
        )
    cut = dates[-holdout_snapshots]
    held = examples.as_of >= np.datetime64(cut)
    split = MaturitySplit(
        _subset(examples, ~held),
        _subset(examples, held),
        dates[:-holdout_snapshots],
        dates[-holdout_snapshots:],
    )
    for name, part in (("training", split.train), ("holdout", split.holdout)):
        if part.labels.min() == part.labels.max():
            raise DatasetError(
                f"maturity: every {name} label is {int(part.labels[0])}; the model needs "
                "contracts whose money left and contracts whose money stayed"
            )
    return split


def fit_maturity(
    train: MaturityExamples, config: MaturityConfig
) -> tuple[MaturityOutflowModel, CalibratedClassifierCV, StandardScaler]:
    """Fit and export; returns the scikit-learn pieces too (tests compare the two)."""
    raw = train.inputs
    with np.errstate(all="ignore"):
        medians = np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)
    imputed = np.where(np.isnan(raw), medians, raw)
    scaler = StandardScaler().fit(imputed)
    folds = min(config.folds, int(np.bincount(train.labels).min()))
    if folds < 2:
        raise DatasetError("maturity: fewer than 2 examples of a label, cannot calibrate")
    classifier = CalibratedClassifierCV(
        LogisticRegression(C=config.c, max_iter=2000),
        method="sigmoid",
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        ensemble=False,  # one regression on all rows, its sigmoid fitted on out-of-fold scores
    )
    classifier.fit(scaler.transform(imputed), train.labels)
    exported = []
    for member in classifier.calibrated_classifiers_:
        weights = member.estimator.coef_[0] / scaler.scale_
        intercept = float(member.estimator.intercept_[0] - np.sum(weights * scaler.mean_))
        sigmoid = member.calibrators[0]
        exported.append(
            PlattFold(
                weights=tuple(float(w) for w in weights),
                intercept=intercept,
                a=float(sigmoid.a_),
                b=float(sigmoid.b_),
            )
        )
    model = MaturityOutflowModel(medians=tuple(float(m) for m in medians), folds=tuple(exported))
    return model, classifier, scaler


def predict(model: MaturityOutflowModel, examples: MaturityExamples) -> np.ndarray:
    """The served arithmetic on every example (what evaluation measures)."""
    return np.array([model.probability_of_inputs(row) for row in examples.inputs.tolist()])


def evaluate_maturity(model: MaturityOutflowModel, holdout: MaturityExamples) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, top-decile lift and row count on the holdout."""
    target, proba = holdout.labels, predict(model, holdout)
    top = np.argsort(-proba, kind="stable")[: max(1, len(proba) // 10)]
    rate = float(target.mean())
    return {
        "roc_auc": float(roc_auc_score(target, proba)),
        "pr_auc": float(average_precision_score(target, proba)),
        "brier": float(brier_score_loss(target, proba)),
        "top_decile_lift": float(target[top].mean() / rate) if rate > 0 else 0.0,
        "rows": float(len(target)),
        "holdout_outflow_rate": rate,
    }


def contracts_fingerprint(tables: Tables) -> str:
    """The canonical tables' fingerprint extended with the contracts (the gate compares it)."""
    contracts = tables.contracts
    summary = {
        "tables": data_fingerprint(tables),
        "rows": len(contracts),
        "amount": repr(float(contracts["amount"].sum())) if len(contracts) else "0",
        "outcomes": contracts["outcome"].value_counts().sort_index().to_dict(),
        "maturity": [str(contracts["maturity_date"].min()), str(contracts["maturity_date"].max())],
    }
    blob = json.dumps(summary, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fit_and_evaluate(
    tables: Tables,
    catalogue: Catalogue,
    config: MaturityConfig,
    progress: Progress | None = None,
) -> tuple[MaturityOutflowModel, MaturitySplit, dict[str, float]]:
    """Examples, time split, fit on the past, metrics on the holdout (no MLflow)."""
    examples = maturity_examples(
        tables, catalogue, min_history=config.min_history, progress=progress
    )
    split = time_split(examples, config.holdout_snapshots)
    if progress is not None:
        progress(f"fitting on {len(split.train.labels):,} contracts")
    model, _, _ = fit_maturity(split.train, config)
    metrics = evaluate_maturity(model, split.holdout)
    metrics["train_rows"] = float(len(split.train.labels))
    return model, split, metrics


def train_maturity(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    progress: Progress | None = None,
    config: MaturityConfig | None = None,
    options: RunOptions | None = None,
) -> TrainResult:
    """Fit, evaluate on the time holdout, log to MLflow and register a new version
    (``options``: experiment, run name, description, or no version at all).

    A failure after the run opens leaves a FAILED run and no version (as for churn).
    """
    config = config or MaturityConfig()
    options = options or RunOptions()
    registry = options.registry(settings)
    started = time.perf_counter()
    params: dict[str, object] = {f"config.{k}": v for k, v in dataclasses.asdict(config).items()}
    params.update(outflow_window_days=OUTFLOW_WINDOW_DAYS, catalogue_version=catalogue.version)
    fingerprint = contracts_fingerprint(tables)
    tags = {"nbo.kind": "maturity", "nbo.data_fingerprint": fingerprint}
    with registry.start_run(
        options.name_for("maturity", settings), tags=tags, description=options.description
    ) as run_id:
        registry.log_run_data(run_id, params=params)
        model, split, metrics = fit_and_evaluate(tables, catalogue, config, progress)
        metrics["train_seconds"] = time.perf_counter() - started
        dates = {
            "train_as_of": ",".join(f"{d:%Y-%m-%d}" for d in split.train_dates),
            "holdout_as_of": ",".join(f"{d:%Y-%m-%d}" for d in split.holdout_dates),
            "n_features": len(INPUT_NAMES),
        }
        holdout_proba = predict(model, split.holdout)
        table = calibration_table(split.holdout.labels, holdout_proba)
        table = table.rename(columns={"customers": "contracts"})
        with tempfile.TemporaryDirectory(prefix="nbo-train-") as tmp:
            names = Path(tmp) / "input_names.json"
            names.write_text(json.dumps(list(INPUT_NAMES), indent=1))
            table_path = Path(tmp) / "calibration.csv"
            table.to_csv(table_path, index=False)
            # Contracts carry no id here: the rows are keyed by snapshot date and label.
            keys = zip(split.holdout.as_of.tolist(), split.holdout.labels.tolist(), strict=True)
            per_row = HoldoutValues.auc("roc_auc", split.holdout.labels, holdout_proba, keys)
            if progress:
                progress("registering")
            log_time_split(
                registry,
                run_id,
                "maturity",
                fingerprint,
                settings.data_dir,
                dates,
                pd.DataFrame(split.train.inputs, columns=list(INPUT_NAMES)),
                pd.DataFrame(split.holdout.inputs, columns=list(INPUT_NAMES)),
            )
            version = finish(
                registry,
                options,
                model,
                settings.maturity_model_name,
                params=dates,
                metrics=metrics,
                artifacts={
                    "input_names": names,
                    "calibration": table_path,
                    "holdout_values": per_row.write(Path(tmp)),
                },
                run_id=run_id,
            )
    return TrainResult.registered(
        version, run_id, metrics, {**params, **dates}, started, settings.maturity_model_name
    )
