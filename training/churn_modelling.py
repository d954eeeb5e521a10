"""The public Bank Customer Churn ("Churn_Modelling") format: validated loading and evaluation.

This data set has one row per customer and no history, so it cannot train the production
model (which reads behaviour over time); it is the public yardstick for the churn
*modelling* choices. The model here blends two views of the same ten columns:

* a histogram gradient-boosting model on the raw columns (finds the interactions, e.g.
  older inactive customers in Germany), with fixed parameters chosen once by 5-fold CV on
  the dev file and then frozen (no per-run search, so a CV score is not tuned on its folds);
* a logistic regression on engineered columns: age as a smooth curve (splines: churn peaks
  in the 50s and falls again), number of products one-hot (3-4 products churn far more than
  2, which no monotone term can express), zero balance, Germany, and the age x inactivity
  interaction.

The two are averaged: the blend beats either alone because the two make different
mistakes. ``RowNumber``, ``CustomerId`` and ``Surname`` are identifiers: they are dropped
on load and never reach a feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

LABEL = "Exited"
IDENTIFIERS = ("RowNumber", "CustomerId", "Surname")
"""Identify a person, predict nothing: never features (``Surname`` is a personal name)."""
NUMERIC = (
    "CreditScore",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
)
CATEGORICAL = {"Geography": ("France", "Germany", "Spain"), "Gender": ("Female", "Male")}
FEATURES = (*NUMERIC, *CATEGORICAL)


class ChurnModellingError(ValueError):
    """The file is not usable as Churn_Modelling data; the message names the problem."""


@dataclass(frozen=True)
class ChurnModellingData:
    """Validated feature columns (``FEATURES`` only) and the 0/1 label."""

    features: pd.DataFrame
    target: np.ndarray


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ChurnModellingError(
            f"{path}: column {column!r} must be numeric; {int(bad.sum())} value(s) are not "
            f"(first at data row {row + 1}: {frame[column].iloc[row]!r})"
        )
    return values.astype(np.float64)


def validate(frame: pd.DataFrame, path: Path, *, need_label: bool = True) -> ChurnModellingData:
    """Check columns, types and labels of a raw frame; identifiers are dropped here."""
    if frame.empty:
        raise ChurnModellingError(f"{path}: no data rows")
    needed = [*FEATURES, LABEL] if need_label else list(FEATURES)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ChurnModellingError(f"{path}: missing column(s) {', '.join(missing)}")
    out = pd.DataFrame({c: _numeric_column(frame, c, path) for c in NUMERIC})
    for column, levels in CATEGORICAL.items():
        text = frame[column].astype("string").str.strip()
        unknown = ~text.isin(levels)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise ChurnModellingError(
                f"{path}: column {column!r} must be one of {', '.join(levels)}; "
                f"data row {row + 1} has {frame[column].iloc[row]!r}"
            )
        out[column] = text.astype(object)
    target = np.zeros(len(out), dtype=np.int64)
    if need_label:
        label = _numeric_column(frame, LABEL, path)
        if not label.isin([0.0, 1.0]).all():
            raise ChurnModellingError(f"{path}: column {LABEL!r} must be 0 or 1")
        target = label.to_numpy().astype(np.int64)
        if target.min() == target.max():
            raise ChurnModellingError(
                f"{path}: column {LABEL!r} has a single class ({int(target[0])}): "
                "evaluation needs customers who left and customers who stayed"
            )
    return ChurnModellingData(out.reset_index(drop=True), target)


def load_churn_modelling(path: Path) -> ChurnModellingData:
    """Read and validate a Churn_Modelling CSV (the public column names)."""
    if not path.is_file():
        raise ChurnModellingError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ChurnModellingError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ChurnModellingError(f"{path}: not a readable CSV ({exc})") from None
    return validate(frame, path)


# -- features ---------------------------------------------------------------------------------


def tree_matrix(features: pd.DataFrame) -> np.ndarray:
    """Raw columns for the gradient-boosting model; categoricals as 0/1 indicators."""
    cols = [features[c].to_numpy(np.float64) for c in NUMERIC]
    for column, levels in CATEGORICAL.items():
        cols += [(features[column] == level).to_numpy(np.float64) for level in levels[1:]]
    return np.column_stack(cols)


def linear_matrix(features: pd.DataFrame) -> np.ndarray:
    """Engineered columns for the logistic model that need no fitted transform."""
    products = features["NumOfProducts"].clip(1, 4).to_numpy()
    active = features["IsActiveMember"].to_numpy(np.float64)
    age = features["Age"].to_numpy(np.float64)
    balance = features["Balance"].to_numpy(np.float64)
    germany = (features["Geography"] == "Germany").to_numpy(np.float64)
    female = (features["Gender"] == "Female").to_numpy(np.float64)
    one, two = (products == 1).astype(np.float64), (products == 2).astype(np.float64)
    empty = (balance == 0).astype(np.float64)
    return np.column_stack(
        [
            *[(products == k).astype(np.float64) for k in (1, 3, 4)],  # 2 is the baseline
            active,
            germany,
            female,
            empty,
            np.log1p(balance),
            features["CreditScore"].to_numpy(np.float64) / 100,
            features["Tenure"].to_numpy(np.float64),
            features["HasCrCard"].to_numpy(np.float64),
            features["EstimatedSalary"].to_numpy(np.float64) / 1e5,
            (1 - active) * (age - 40) / 10,
            germany * (balance > 0),
            female * germany,
            one * empty,
            two * empty,
            one * germany,
            two * active,
        ]
    )


def _interacted(curve: np.ndarray, features: pd.DataFrame, by: tuple[str, ...]) -> np.ndarray:
    """A fitted curve's basis, and the basis times each 0/1 column in ``by``."""
    flags = {
        "active": features["IsActiveMember"].to_numpy(np.float64),
        "germany": (features["Geography"] == "Germany").to_numpy(np.float64),
        "female": (features["Gender"] == "Female").to_numpy(np.float64),
        "one_product": (features["NumOfProducts"] == 1).to_numpy(np.float64),
        "two_products": (features["NumOfProducts"] == 2).to_numpy(np.float64),
    }
    return np.hstack([curve, *[curve * flags[name][:, None] for name in by]])


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlendConfig:
    """Frozen parameters (chosen once by CV on the dev file, then never searched per run)."""

    learning_rate: float = 0.03
    max_iter: int = 400
    max_depth: int = 3
    min_samples_leaf: int = 30
    l2_regularization: float = 1.0
    age_knots: int = 5
    balance_knots: int = 4
    logistic_c: float = 0.05
    tree_weight: float = 0.4
    seed: int = 0


class ChurnBlend:
    """Average of a gradient-boosting model and a logistic model on engineered columns."""

    def __init__(self, config: BlendConfig | None = None) -> None:
        self.config = config or BlendConfig()
        c = self.config
        self.tree = HistGradientBoostingClassifier(
            learning_rate=c.learning_rate,
            max_iter=c.max_iter,
            max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf,
            l2_regularization=c.l2_regularization,
            early_stopping=False,
            random_state=c.seed,
        )
        self.age_curve = SplineTransformer(n_knots=c.age_knots, degree=3, knots="quantile")
        self.balance_curve = SplineTransformer(n_knots=c.balance_knots, degree=2, knots="quantile")
        self.linear = make_pipeline(
            StandardScaler(), LogisticRegression(C=c.logistic_c, max_iter=3000)
        )

    def _linear_inputs(self, features: pd.DataFrame) -> np.ndarray:
        """Age curve by activity / products / country / gender; balance curve by activity
        and country (a German balance and an inactive customer's balance mean different
        things); then the plain engineered columns."""
        age = self.age_curve.transform(features[["Age"]].to_numpy(np.float64))
        log_balance = np.log1p(features[["Balance"]].to_numpy(np.float64))
        balance = self.balance_curve.transform(log_balance)
        return np.hstack(
            [
                _interacted(
                    age, features, ("active", "two_products", "germany", "female", "one_product")
                ),
                _interacted(balance, features, ("active", "germany")),
                linear_matrix(features),
            ]
        )

    def fit(self, features: pd.DataFrame, target: np.ndarray) -> ChurnBlend:
        self.tree.fit(tree_matrix(features), target)
        self.age_curve.fit(features[["Age"]].to_numpy(np.float64))
        balance = features["Balance"].to_numpy(np.float64)
        # Knots from the customers who have a balance (a third have none: one knot's worth).
        self.balance_curve.fit(np.log1p(balance[balance > 0])[:, None])
        self.linear.fit(self._linear_inputs(features), target)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        w = self.config.tree_weight
        tree = self.tree.predict_proba(tree_matrix(features))[:, 1]
        linear = self.linear.predict_proba(self._linear_inputs(features))[:, 1]
        return w * tree + (1 - w) * linear


# -- evaluation -------------------------------------------------------------------------------


def top_decile_lift(target: np.ndarray, proba: np.ndarray) -> float:
    """Churn rate among the 10% highest scores divided by the overall churn rate."""
    top = np.argsort(-proba, kind="stable")[: max(1, len(proba) // 10)]
    return float(target[top].mean() / target.mean())


def churn_metrics(target: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The four figures the CLI prints, plus the row count."""
    return {
        "roc_auc": float(roc_auc_score(target, proba)),
        "pr_auc": float(average_precision_score(target, proba)),
        "brier": float(brier_score_loss(target, proba)),
        "top_decile_lift": top_decile_lift(target, proba),
        "rows": float(len(target)),
    }


def cross_validate(
    data: ChurnModellingData, folds: int = 5, config: BlendConfig | None = None
) -> dict[str, float]:
    """Stratified k-fold: every row is scored by a model that never saw it; metrics pooled."""
    config = config or BlendConfig()
    if np.bincount(data.target).min() < folds:
        raise ChurnModellingError(f"{folds}-fold CV needs at least {folds} rows of each class")
    proba = np.zeros(len(data.target))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    for fit_rows, score_rows in splitter.split(data.features, data.target):
        model = ChurnBlend(config).fit(data.features.iloc[fit_rows], data.target[fit_rows])
        proba[score_rows] = model.predict_proba(data.features.iloc[score_rows])
    return churn_metrics(data.target, proba)


def fit_and_score(
    train: ChurnModellingData, test: ChurnModellingData, config: BlendConfig | None = None
) -> dict[str, float]:
    """Fit on ``train``, report on ``test`` (customers the model never saw)."""
    model = ChurnBlend(config).fit(train.features, train.target)
    return churn_metrics(test.target, model.predict_proba(test.features))


def split_half(data: ChurnModellingData, seed: int = 0) -> tuple[ChurnModellingData, ...]:
    """A fixed stratified 50/50 split (for a held-out check besides CV)."""
    rng = np.random.default_rng(seed)
    first = np.zeros(len(data.target), dtype=bool)
    for label in (0, 1):
        rows = np.flatnonzero(data.target == label)
        first[rng.permutation(rows)[: len(rows) // 2]] = True
    return tuple(
        ChurnModellingData(data.features[mask].reset_index(drop=True), data.target[mask])
        for mask in (first, ~first)
    )
