"""The two-stage linear recommender, kept so versions registered with it still load and score.

Training builds :class:`core.scoring.boosted.BoostedRecommender`s; this model is only
unpickled (and hand-built in tests). The service reaches it through the
``RecommenderScorer`` protocol alone and never imports this module.

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

from core.scoring.base import FeatureRecord, PreparedFromScores, Reason
from core.scoring.boosted import REASON_TEXTS
from core.scoring.design import TabularDesign, column_as_float, floats

PAIR_FEATURES = ("collaborative", "held_before", "popularity")
"""Pair features shared by all products, in the order of ``pair_weights``."""

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
class TwoStageRecommender(PreparedFromScores):
    """ALS projection + exported logistic ranker; implements ``RecommenderScorer``
    (``prepare`` from :meth:`score` and :meth:`reasons`, :class:`PreparedFromScores`)."""

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
        def flags(cols: Sequence[str]) -> np.ndarray:  # NaN (missing) > 0 is False
            return (floats([record.get(c) for c in cols]) > 0).astype(np.float64)[None, :]

        return flags(self._held_cols), flags(self._dropped_cols)

    def _frame_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        def flags(cols: Sequence[str]) -> np.ndarray:
            values = np.column_stack([column_as_float(frame[c]) for c in cols])
            return (values > 0).astype(np.float64)  # NaN (missing) > 0 is False

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
