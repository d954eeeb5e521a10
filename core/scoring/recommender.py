"""Next-product propensities at request time: collaborative filtering feeding a linear ranker.

Stage 1 (collaborative). Implicit ALS learns item factors ``Y`` (products x factors) from
the customer x product holdings matrix. Scoring a customer normally needs their user
factors ``x_u``, i.e. a per-customer least-squares solve, and is impossible for a customer
ALS never saw. With uniform confidence (the ALS objective without implicit's ``1 + alpha r``
weights) that solve has a closed form for *any* 0/1 holdings vector ``h``::

    x_u = argmin_x ||h - Y x||^2 + lambda ||x||^2 = (Y^T Y + lambda I)^-1 Y^T h
    score = Y x_u = Y (Y^T Y + lambda I)^-1 Y^T h = M h

so the items x items matrix ``M = Y (Y^T Y + lambda I)^-1 Y^T`` is computed once at training
and the collaborative score of every product is ``M @ h`` (a 24 x 24 product, no solve).
For a product the customer does not hold, ``h[p] = 0``, so its score comes only from the
products they do hold. Dropping the confidence weights is the price of the closed form; the
ranker below learns how far to trust the score.

Stage 2 (ranker). A logistic regression over (customer, product) pairs, fitted offline on
products added in the following month, with weights exported to numpy:

* shared pair features: the collaborative score, "held this product before" and the
  product's log add-popularity (the product's base rate);
* the customer's standardized profile, behaviour and holdings, each with its own weight per
  product (the product one-hot crossed with the customer features): this is where "holders
  of a payroll account add a credit card" is learned.

The logit of product ``p`` is a sum of per-feature terms, each relative to the average
training pair (inputs are standardized), so ``reasons`` can report which terms pushed this
product up for this customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.scoring.base import FeatureRecord, Reason
from core.scoring.churn import TabularDesign, column_as_float, floats

PAIR_FEATURES = ("collaborative", "held_before", "popularity")
"""Pair features shared by all products, in the order of ``pair_weights``."""

REASON_TEXTS = {
    "collaborative": "customers with holdings like yours added this",
    "held_before": "you held this before",
    "popular": "one of the products customers add most often",
    "related_products": "goes with products you already hold",
    "life_stage": "fits your age, income and relationship with the bank",
    "activity": "fits how you use your accounts",
    "popular_in_segment": "popular in your segment this month",
    "recent_activity": "you have been adding products recently",
}
"""What each reason code says to a customer or an advisor."""

_CHUNK_ROWS = 4096


def held_column(product_id: str) -> str:
    return f"held__{product_id}"


def dropped_column(product_id: str) -> str:
    return f"dropped__{product_id}"


def customer_group(column: str) -> str:
    """Reason code of a customer design column (``held__x`` -> ``related_products`` ...)."""
    base = column.removeprefix("missing__").split("=", 1)[0]
    if base.startswith(("held__", "months_held__", "held_prev__")) or base == "n_products":
        return "related_products"
    if base in ("age", "income", "tier", "segment", "tenure_months", "risk_level"):
        return "life_stage"
    return "activity"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class TwoStageRecommender:
    """ALS projection + exported logistic ranker; implements ``RecommenderScorer``."""

    product_ids: list[str]
    popularity: np.ndarray  # (P,) share of training customers who added each product
    projection: np.ndarray  # (P, P) the matrix M of the module docstring
    customer_design: TabularDesign  # customer row -> standardized z_c (d,)
    interaction_weights: np.ndarray  # (P, d) per-product weights on z_c
    pair_mean: np.ndarray  # (3,) standardization of PAIR_FEATURES
    pair_scale: np.ndarray  # (3,)
    pair_weights: np.ndarray  # (3,)
    intercept: float
    kind: str = "recommender"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._log_popularity = np.log(np.clip(self.popularity, 1e-6, None))
        self._groups = np.array([customer_group(c) for c in self.customer_design.columns])
        self._held_cols = [held_column(p) for p in self.product_ids]
        self._dropped_cols = [dropped_column(p) for p in self.product_ids]
        names = list(self.customer_design.feature_names)
        self.feature_names = names + [
            c for c in self._held_cols + self._dropped_cols if c not in names
        ]

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # -- inputs -----------------------------------------------------------------------------

    def _record_pairs(self, record: FeatureRecord) -> tuple[np.ndarray, np.ndarray]:
        def flags(cols: Sequence[str]) -> np.ndarray:
            values = np.nan_to_num(floats([record.get(c) for c in cols]), nan=0.0)
            return (values > 0).astype(np.float64)[None, :]

        return flags(self._held_cols), flags(self._dropped_cols)

    def _frame_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        def flags(cols: Sequence[str]) -> np.ndarray:
            values = np.column_stack([column_as_float(frame[c]) for c in cols])
            return (np.nan_to_num(values, nan=0.0) > 0).astype(np.float64)

        return flags(self._held_cols), flags(self._dropped_cols)

    def pair_matrix(self, held: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        """Standardized pair features, shape ``(rows, P, 3)``.

        Elementwise products summed over the last axis (not ``@``) so that one row and a
        batch of rows go through the same floating-point operations and give identical
        numbers: BLAS picks different kernels for a vector and a matrix.
        """
        collab = (held[:, None, :] * self.projection[None, :, :]).sum(axis=2)
        held_before = dropped * (1.0 - held)
        popularity = np.broadcast_to(self._log_popularity, held.shape)
        raw = np.stack([collab, held_before, popularity], axis=2)
        return (raw - self.pair_mean) / self.pair_scale

    # -- scoring ----------------------------------------------------------------------------

    def _terms(self, z_customer: np.ndarray, z_pair: np.ndarray) -> np.ndarray:
        """Logit of every (row, product): ``(rows, P)``."""
        customer = (z_customer[:, None, :] * self.interaction_weights[None, :, :]).sum(axis=2)
        pair = (z_pair * self.pair_weights).sum(axis=2)
        return customer + pair + self.intercept

    def score(self, record: FeatureRecord) -> np.ndarray:
        z_customer = self.customer_design.transform_record(record)
        z_pair = self.pair_matrix(*self._record_pairs(record))
        return _sigmoid(self._terms(z_customer, z_pair))[0]

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Propensities for every row of a feature frame, ``(rows, P)``; same numbers as
        :meth:`score` on each row's record (offline evaluation uses this)."""
        out = np.empty((len(frame), len(self.product_ids)))
        for start in range(0, len(frame), _CHUNK_ROWS):
            chunk = frame.iloc[start : start + _CHUNK_ROWS]
            z_customer = self.customer_design.transform_frame(chunk)
            z_pair = self.pair_matrix(*self._frame_pairs(chunk))
            out[start : start + len(chunk)] = _sigmoid(self._terms(z_customer, z_pair))
        return out

    # -- explanations -----------------------------------------------------------------------

    def contributions(self, record: FeatureRecord, product_index: int) -> dict[str, float]:
        """Each reason group's share of product ``product_index``'s logit for this record."""
        z_customer = self.customer_design.transform_record(record)[0]
        z_pair = self.pair_matrix(*self._record_pairs(record))[0, product_index]
        terms = z_customer * self.interaction_weights[product_index]
        pair_terms = z_pair * self.pair_weights
        out = {
            "collaborative": float(pair_terms[0]),
            "held_before": float(pair_terms[1]),
            "popular": float(pair_terms[2]),
        }
        for group in ("related_products", "life_stage", "activity"):
            out[group] = float(terms[self._groups == group].sum())
        return out

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """The (up to three) groups that raise this product's score most for this customer.

        Only groups with a positive contribution are named; if none is positive, the least
        negative one is, so an offer always carries the model's strongest actual argument.
        """
        contrib = self.contributions(record, product_index)
        ranked = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)
        chosen = [code for code, value in ranked if value > 0][:3] or [ranked[0][0]]
        return [Reason(code=code, text=REASON_TEXTS[code]) for code in chosen]


# == Gradient-boosted ranker (the production model) =========================================
#
# The two-stage linear model above stays for models registered before the boosted ranker
# (and as a hand-buildable scorer in tests). New versions are ``BoostedRecommender``s.

PROFILE_INPUTS = (
    "age",
    "tenure_months",
    "income",
    "risk_level",
    "n_products",
    "products_added_3m",
    "products_dropped_3m",
    "active",
    "employee",
    "resident",
    "logins_3m_avg",
    "months_since_login",
    "balance",
    "balance_change_3m",
)
"""Customer-level record fields read as numbers (``None`` -> NaN, booleans -> 0/1)."""

HOLDING_PREFIXES = ("held__", "held_prev__", "months_held__", "dropped__")
"""Per-product holding history read from the record: now, one snapshot back, run length,
held earlier in the lookback but not now."""

_GROUP_OF_PROFILE = {
    "age": "life_stage",
    "tenure_months": "life_stage",
    "income": "life_stage",
    "risk_level": "life_stage",
    "tier": "life_stage",
    "segment": "popular_in_segment",
    "n_products": "related_products",
}


@dataclass(frozen=True)
class TreeEnsemble:
    """Fitted trees as flat node arrays, evaluated for many rows and trees at once.

    Trees are padded to ``nodes`` nodes each and stored as ``(trees, nodes)`` arrays with
    the semantics of scikit-learn's HistGradientBoosting predictor nodes: at a split node,
    a missing value goes left iff ``missing_left``, otherwise ``x <= threshold`` goes left.
    ``tree_class[t]`` is the output column that tree ``t`` adds its leaf value to;
    ``baseline`` holds the initial raw prediction per output column. Leaves point to
    themselves, so ``depth`` synchronous steps bring every (tree, row) to its leaf.
    ``expected`` is each node's training-count-weighted mean leaf value (leaves: their
    value), which :meth:`contributions` uses to credit each split's feature.
    """

    feature: np.ndarray  # (T, N) int64, 0 at leaves
    threshold: np.ndarray  # (T, N) float64
    missing_left: np.ndarray  # (T, N) bool
    left: np.ndarray  # (T, N) int64
    right: np.ndarray  # (T, N) int64
    value: np.ndarray  # (T, N) float64, leaf values (0 at split nodes)
    expected: np.ndarray  # (T, N) float64
    tree_class: np.ndarray  # (T,) int64
    baseline: np.ndarray  # (C,) float64
    depth: int

    @classmethod
    def constant(cls, baseline: np.ndarray) -> TreeEnsemble:
        """No trees: every row gets ``baseline`` (a model before fitting, or a prior)."""
        empty = np.zeros((0, 1))
        index = np.zeros((0, 1), dtype=np.int64)
        return cls(
            feature=index,
            threshold=empty,
            missing_left=np.zeros((0, 1), dtype=bool),
            left=index,
            right=index,
            value=empty,
            expected=empty,
            tree_class=np.zeros(0, dtype=np.int64),
            baseline=np.asarray(baseline, dtype=np.float64),
            depth=0,
        )

    def leaves(self, x: np.ndarray, trees: np.ndarray | None = None) -> np.ndarray:
        """Leaf index reached by every (tree, row), shape ``(T', rows)``."""
        sel = slice(None) if trees is None else trees
        feature, threshold = self.feature[sel], self.threshold[sel]
        missing_left, left, right = self.missing_left[sel], self.left[sel], self.right[sel]
        n_trees = feature.shape[0]
        node = np.zeros((n_trees, x.shape[0]), dtype=np.int64)
        tree = np.arange(n_trees)[:, None]
        for _ in range(self.depth):
            f = feature[tree, node]
            v = x[np.arange(x.shape[0])[None, :], f]
            go_left = np.where(np.isnan(v), missing_left[tree, node], v <= threshold[tree, node])
            node = np.where(go_left, left[tree, node], right[tree, node])
        return node

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions (log-odds scale) ``(rows, C)``, as ``decision_function``."""
        leaf_values = self.value[np.arange(self.value.shape[0])[:, None], self.leaves(x)]
        out = np.tile(self.baseline, (x.shape[0], 1))
        for c in range(len(self.baseline)):
            out[:, c] += leaf_values[self.tree_class == c].sum(axis=0)
        return out

    def contributions(self, x: np.ndarray, output: int) -> tuple[np.ndarray, float]:
        """Per-feature contributions to one row's raw output ``output`` and the bias.

        Each split on a tree's path credits its feature with the change in expected value
        (child minus parent); the bias is the baseline plus every root's expected value,
        so ``bias + contributions.sum()`` equals the raw output.
        """
        trees = np.flatnonzero(self.tree_class == output)
        out = np.zeros(x.shape[1])
        bias = float(self.baseline[output] + self.expected[trees, 0].sum())
        node = np.zeros(len(trees), dtype=np.int64)
        row = x[0]
        for _ in range(self.depth):
            f = self.feature[trees, node]
            v = row[f]
            go_left = np.where(
                np.isnan(v), self.missing_left[trees, node], v <= self.threshold[trees, node]
            )
            child = np.where(go_left, self.left[trees, node], self.right[trees, node])
            moved = child != node
            delta = self.expected[trees, child] - self.expected[trees, node]
            np.add.at(out, f[moved], delta[moved])
            node = child
        return out, bias


def _softmax(raw: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: raw outputs -> a probability per product (sums to 1)."""
    shifted = raw - raw.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class BoostedRecommender:
    """Which product a customer adds next: a multiclass gradient-boosted ranker.

    One class per product; the inputs are one customer's profile, the holding history of
    every product (now, one snapshot back, run length, dropped earlier) and the
    collaborative score of every product (``projection @ held``, the closed-form ALS
    projection described at the top of this module). The model is fitted on customers
    who added something, so its softmax is "given that this customer adds a product,
    which one"; products already held are ranked by the caller's filter, not here.

    Scoring is numpy only: one feature vector from the record, one synchronous walk of
    every tree (:class:`TreeEnsemble`). Implements ``RecommenderScorer``.
    """

    product_ids: list[str]
    popularity: np.ndarray  # (P,) share of training additions per product
    projection: np.ndarray  # (P, P) collaborative projection
    segments: tuple[str, ...]  # segment levels one-hot encoded
    tiers: tuple[str, ...]
    trees: TreeEnsemble
    kind: str = "recommender"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._record_fields = list(PROFILE_INPUTS) + [
            prefix + p for prefix in HOLDING_PREFIXES for p in self.product_ids
        ]
        self.feature_names = [*self._record_fields, "segment", "tier"]
        self._groups = self._column_groups()

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # -- inputs -----------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Names of the model's input columns, in order."""
        return [
            *self._record_fields,
            *(f"segment={s}" for s in self.segments),
            *(f"tier={t}" for t in self.tiers),
            *(f"collaborative__{p}" for p in self.product_ids),
        ]

    def design(self, raw: np.ndarray, segment: np.ndarray, tier: np.ndarray) -> np.ndarray:
        """Model inputs from the record fields ``raw`` ``(rows, fields)`` and the categories.

        Shared by :meth:`score` (one row) and training (all rows): same numbers either way.
        """
        n = len(self.product_ids)
        held = np.nan_to_num(raw[:, len(PROFILE_INPUTS) : len(PROFILE_INPUTS) + n], nan=0.0)
        held = (held > 0).astype(np.float64)
        collab = (held[:, None, :] * self.projection[None, :, :]).sum(axis=2)
        seg = [(segment == s).astype(np.float64)[:, None] for s in self.segments]
        tie = [(tier == t).astype(np.float64)[:, None] for t in self.tiers]
        return np.hstack([raw, *seg, *tie, collab])

    def record_inputs(self, record: FeatureRecord) -> np.ndarray:
        """One record as a model input row ``(1, columns)``."""
        raw = floats([_number(record.get(name)) for name in self._record_fields])[None, :]
        segment = np.array([record.get("segment")], dtype=object)
        tier = np.array([record.get("tier")], dtype=object)
        return self.design(raw, segment, tier)

    # -- scoring ----------------------------------------------------------------------------

    def score(self, record: FeatureRecord) -> np.ndarray:
        return _softmax(self.trees.raw(self.record_inputs(record)))[0]

    def score_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(rows, P)`` for model input rows (batch evaluation)."""
        out = np.empty((x.shape[0], len(self.product_ids)))
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            out[start : start + _CHUNK_ROWS] = _softmax(
                self.trees.raw(x[start : start + _CHUNK_ROWS])
            )
        return out

    # -- explanations -----------------------------------------------------------------------

    def _column_groups(self) -> list[str]:
        groups = [_GROUP_OF_PROFILE.get(c, "activity") for c in PROFILE_INPUTS]
        groups += ["related_products"] * (len(HOLDING_PREFIXES) * len(self.product_ids))
        groups += ["popular_in_segment"] * len(self.segments) + ["life_stage"] * len(self.tiers)
        groups += ["collaborative"] * len(self.product_ids)
        return groups

    def contributions(self, record: FeatureRecord, product_index: int) -> dict[str, float]:
        """Each reason group's share of product ``product_index``'s raw score (log-odds).

        ``popular`` is the product's bias (its base rate) relative to the average product's;
        a customer's own history of this product (held last month, dropped earlier) counts
        as ``held_before``; products added lately as ``recent_activity``.
        """
        x = self.record_inputs(record)
        per_column, bias = self.trees.contributions(x, product_index)
        out = dict.fromkeys(REASON_TEXTS, 0.0)
        pid = self.product_ids[product_index]
        own = {f"held_prev__{pid}", f"dropped__{pid}"}
        for name, group, value in zip(self.columns, self._groups, per_column, strict=True):
            if name in own:
                group = "held_before"
            elif name == "products_added_3m":
                group = "recent_activity"
            out[group] += float(value)
        biases = [
            self.trees.baseline[c] + self.trees.expected[self.trees.tree_class == c, 0].sum()
            for c in range(len(self.product_ids))
        ]
        out["popular"] = bias - float(np.mean(biases))
        return out

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """The (up to three) groups that raise this product's score most for this customer;
        the strongest one alone if none raises it (an offer always carries an argument)."""
        contrib = self.contributions(record, product_index)
        ranked = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)
        chosen = [code for code, value in ranked if value > 1e-12][:3] or [ranked[0][0]]
        return [Reason(code=code, text=REASON_TEXTS[code]) for code in chosen]


def _number(value: object) -> object:
    """Booleans as 0/1 and everything else unchanged (``floats`` handles None and text)."""
    if isinstance(value, bool):
        return float(value)
    return value
