"""The serving recommender: which product a customer adds next, and why.

:class:`BoostedRecommender` is a multiclass gradient-boosted ranker (one class per
product), optionally blended with a per-product pair ranker; both are exported trees
(:mod:`core.scoring.trees`) scored in numpy and numba, no sklearn or pandas on the request
path.

Among its inputs is the collaborative score of every product: implicit ALS learns item
factors ``Y`` (products x factors) from the customer x product holdings matrix, and with
uniform confidence the least-squares user factors of *any* 0/1 holdings vector ``h`` have a
closed form, so the collaborative score of every product is ``M @ h`` with the items x items
matrix ``M = Y (Y^T Y + lambda I)^-1 Y^T`` computed once at training (``projection``). A
customer ALS never saw is scored the same way, without a per-customer solve.

The request path calls :meth:`BoostedRecommender.prepare` once per customer: one input row,
one walk of every tree; the scores and the shown offers' reasons both come from that walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from core.scoring.base import FeatureRecord, Reason
from core.scoring.design import floats
from core.scoring.trees import FlatTrees, TreeEnsemble

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

LEGACY_PROFILE_INPUTS = (
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
PROFILE_INPUTS = (
    *LEGACY_PROFILE_INPUTS,
    "products_added_1m",
    "products_dropped_1m",
)
"""Customer-level record fields read as numbers (``None`` -> NaN, booleans -> 0/1)."""

LEGACY_HOLDING_PREFIXES = ("held__", "held_prev__", "months_held__", "dropped__")
HOLDING_PREFIXES = (
    *LEGACY_HOLDING_PREFIXES,
    "months_since_held__",
    "times_held__",
    "adds__",
    "held_pattern__",
)
"""Per-product holding history read from the record: now, one snapshot back, run length,
held earlier in the lookback but not now, snapshots since last held, snapshots held,
times added, and the holdings 1..5 snapshots back packed as bits.

A pickle without ``profile_inputs`` / ``holding_prefixes`` of its own (a version trained
before the deeper history) reads the ``LEGACY_*`` fields."""

_GROUP_OF_PROFILE = {
    "age": "life_stage",
    "tenure_months": "life_stage",
    "income": "life_stage",
    "risk_level": "life_stage",
    "tier": "life_stage",
    "segment": "popular_in_segment",
    "n_products": "related_products",
    "acquisition_channel": "life_stage",
    "region": "life_stage",
}


def _softmax(raw: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: raw outputs -> a probability per product (sums to 1)."""
    shifted = raw - raw.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(raw: np.ndarray) -> np.ndarray:
    """Log of :func:`_softmax`, computed stably."""
    shifted = raw - raw.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _ScoringWalk(NamedTuple):
    """One row's scoring walk: the blended scores and the leaf each tree ended in (the
    pair trees' when the blend uses them), kept with the scores for the reasons."""

    raw: np.ndarray
    leaves: np.ndarray
    pair_leaves: np.ndarray | None


@dataclass
class BoostedRecommender:
    """Which product a customer adds next: a multiclass gradient-boosted ranker.

    One class per product; the inputs are one customer's profile, the holding history of
    every product (now, one snapshot back, run length, dropped earlier) and the
    collaborative score of every product (``projection @ held``, the closed-form ALS
    projection of the module docstring). The model is fitted on customers
    who added something, so its softmax is "given that this customer adds a product,
    which one"; products already held are ranked by the caller's filter, not here.

    Scoring is numpy and numba only (no sklearn, no pandas): one feature vector from the
    record, one compiled walk of every tree (:class:`FlatTrees`), both in :meth:`prepare`;
    a bagged model's trees are one ensemble. Implements ``RecommenderScorer``.
    """

    product_ids: list[str]
    popularity: np.ndarray  # (P,) share of training additions per product
    projection: np.ndarray  # (P, P) collaborative projection
    segments: tuple[str, ...]  # segment levels one-hot encoded
    tiers: tuple[str, ...]
    trees: TreeEnsemble
    profile_inputs: tuple[str, ...] = PROFILE_INPUTS
    holding_prefixes: tuple[str, ...] = HOLDING_PREFIXES
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """More text fields one-hot encoded: ``(field, levels)`` pairs, e.g. the acquisition
    channel's most frequent codes (a value outside the levels, or unknown, is all zeros)."""
    pair_trees: TreeEnsemble | None = None
    """The pair ranker: one binary "does the customer add THIS product" model, fitted on
    (customer, product not held) rows with the product's own history in shared columns,
    exported as one set of trees per product that read this model's own input row
    (``training.pair_ranker.export_pair_trees``); output ``p`` is product ``p``'s log-odds."""
    pair_weight: float = 0.0
    """Blend: a product's score is the multiclass log-probability plus ``pair_weight`` x the
    pair ranker's log-odds (0: the multiclass ranker alone)."""
    blend_temperature: float = 1.0
    """The propensity is the softmax of the blended scores divided by this (fitted on the
    training additions, ``training.pair_ranker.fit_temperature``): adding the pair log-odds
    sharpens the distribution, and the arbitration multiplies propensity by product value,
    so the propensity must stay a probability, not just an order. The order is the same
    whatever the temperature."""
    kind: str = "recommender"
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._record_fields = list(self.profile_inputs) + [
            prefix + p for prefix in self.holding_prefixes for p in self.product_ids
        ]
        self.feature_names = [
            *self._record_fields,
            "segment",
            "tier",
            *(name for name, _ in self.categories),
        ]
        self._groups = self._column_groups()
        self._own_history = self._own_history_columns()
        self._onehot_columns = self._onehot_positions()
        self._n_onehot = sum(len(levels) for levels in self._text_levels())
        self._derive_trees()

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("profile_inputs", LEGACY_PROFILE_INPUTS)
        state.setdefault("holding_prefixes", LEGACY_HOLDING_PREFIXES)
        state.setdefault("categories", ())
        state.setdefault("pair_trees", None)  # a version trained without the pair ranker
        state.setdefault("pair_weight", 0.0)
        state.setdefault("blend_temperature", 1.0)
        self.__dict__.update(state)
        self.__post_init__()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # -- inputs -----------------------------------------------------------------------------

    @property
    def record_fields(self) -> list[str]:
        """Numeric record fields read, in input order (then segment, tier, collaborative)."""
        return list(self._record_fields)

    @property
    def columns(self) -> list[str]:
        """Names of the model's input columns, in order."""
        return [
            *self._record_fields,
            *(f"segment={s}" for s in self.segments),
            *(f"tier={t}" for t in self.tiers),
            *(f"{name}={level}" for name, levels in self.categories for level in levels),
            *(f"collaborative__{p}" for p in self.product_ids),
        ]

    @property
    def text_fields(self) -> list[str]:
        """Text record fields one-hot encoded, in the order :meth:`design` takes them."""
        return ["segment", "tier", *(name for name, _ in self.categories)]

    def design(self, raw: np.ndarray, *texts: np.ndarray) -> np.ndarray:
        """Model inputs from the record fields ``raw`` ``(rows, fields)`` and the text
        fields ``texts`` (object arrays, one per :attr:`text_fields`).

        Shared by :meth:`score` (one row) and training (all rows): same numbers either way.
        """
        n, first = len(self.product_ids), len(self.profile_inputs)
        held = (raw[:, first : first + n] > 0).astype(np.float64)  # NaN > 0 is False
        collab = (held[:, None, :] * self.projection[None, :, :]).sum(axis=2)
        onehot = [
            (values == level).astype(np.float64)[:, None]
            for values, known in zip(texts, self._text_levels(), strict=True)
            for level in known
        ]
        return np.hstack([raw, *onehot, collab])

    def record_inputs(self, record: FeatureRecord) -> np.ndarray:
        """One record as a model input row ``(1, columns)``: the numbers of :meth:`design`.

        Why not :meth:`design` on a one-row batch: that is a numpy call per text level on
        tiny arrays, then ``hstack``, and on one row numpy's per-call overhead is most of
        the cost. Here the row is filled in place: the one-hot columns by a dict lookup of
        the text value (a hash match followed by ``==``, the comparison ``design`` makes),
        the collaborative columns by the same elementwise product and last-axis sum as
        ``design`` (so the same bits).
        """
        # numpy converts booleans to 0/1 and None to NaN itself (floats: text -> NaN)
        raw = floats(list(map(record.get, self._record_fields)))
        n, first = len(self.product_ids), len(self.profile_inputs)
        row = np.zeros(len(raw) + self._n_onehot + n)
        row[: len(raw)] = raw
        try:
            for name, columns in self._onehot_columns:
                for j in columns.get(record.get(name), ()):
                    row[j] = 1.0
        except TypeError:  # an unhashable text value: compare level by level
            texts = [np.array([record.get(name)], dtype=object) for name in self.text_fields]
            return self.design(raw[None, :], *texts)
        held = (raw[first : first + n] > 0).astype(np.float64)  # NaN > 0 is False, as in design
        row[len(raw) + self._n_onehot :] = (held[None, :] * self.projection).sum(axis=1)
        return row[None, :]

    def _onehot_positions(self) -> list[tuple[str, dict[object, list[int]]]]:
        """Per text field, each level's input column(s) (for :meth:`record_inputs`)."""
        at = len(self._record_fields)
        out: list[tuple[str, dict[object, list[int]]]] = []
        for name, known in zip(self.text_fields, self._text_levels(), strict=True):
            columns: dict[object, list[int]] = {}
            for level in known:
                columns.setdefault(level, []).append(at)
                at += 1
            out.append((name, columns))
        return out

    def _text_levels(self) -> list[tuple[str, ...]]:
        """The one-hot levels of each of :attr:`text_fields`, in input column order."""
        return [tuple(self.segments), tuple(self.tiers), *(tuple(lv) for _, lv in self.categories)]

    # -- scoring ----------------------------------------------------------------------------

    def prepare(self, record: FeatureRecord) -> PreparedBoosted:
        """The record's input row and one walk of every tree: its scores, and the leaves
        each product's reasons are credited from (explaining an offer walks no tree)."""
        walk = self._walk_row(self.record_inputs(record)[0])
        return PreparedBoosted(self, record, walk, _softmax(walk.raw))

    def score(self, record: FeatureRecord) -> np.ndarray:
        """A propensity per product, ``prepare(record).scores``: the softmax of the blended
        scores over the fitted temperature (sums to 1; without a pair ranker, the
        multiclass probabilities)."""
        return self.prepare(record).scores

    @property
    def _explains_pair(self) -> bool:
        """The blend adds the pair ranker (its trees are walked and credited)."""
        return self._pair_flat is not None and bool(self.pair_weight)

    def _walk_row(self, row: np.ndarray) -> _ScoringWalk:
        raw, leaves = self._flat.raw_leaves_row(row)
        pair_raw, pair_leaves = None, None
        pair = self._pair_flat if self._explains_pair else None
        if pair is not None:  # with weight 0 the pair ranker changes neither output
            pair_raw, pair_leaves = pair.raw_leaves_row(row)
        return _ScoringWalk(self._blend(raw, pair_raw), leaves, pair_leaves)

    def _blend(self, raw: np.ndarray, pair_raw: np.ndarray | None) -> np.ndarray:
        """Multiclass raw outputs (and the pair ranker's, if any) -> blended log scores."""
        scores = _log_softmax(raw)
        if pair_raw is not None and self.pair_weight:
            scores = (scores + self.pair_weight * pair_raw) / self.blend_temperature
        return scores

    def blended_inputs(self, x: np.ndarray) -> np.ndarray:
        """Blended scores (log scale) ``(rows, P)`` for model input rows: the multiclass
        log-probability plus ``pair_weight`` x the pair ranker's log-odds, over
        ``blend_temperature``."""
        pair = self.pair_trees.raw(x) if self.pair_trees is not None else None
        return self._blend(self.trees.raw(x), pair)

    def score_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(rows, P)`` for model input rows (batch evaluation)."""
        out = np.empty((x.shape[0], len(self.product_ids)))
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            out[start : start + _CHUNK_ROWS] = _softmax(
                self.blended_inputs(x[start : start + _CHUNK_ROWS])
            )
        return out

    # -- explanations -----------------------------------------------------------------------

    def contributions(self, record: FeatureRecord, product_index: int) -> dict[str, float]:
        """One product's reason-group shares, ``prepare(record).contributions([j])[0]``
        (a convenience: explaining several products, prepare once)."""
        return self.prepare(record).contributions([product_index])[0]

    def reasons(self, record: FeatureRecord, product_index: int) -> list[Reason]:
        """One product's reasons, ``prepare(record).reasons([product_index])[0]`` (a
        convenience: the request path prepares once and explains all its offers)."""
        return self.prepare(record).reasons([product_index])[0]

    def _column_groups(self) -> list[str]:
        groups = [_GROUP_OF_PROFILE.get(c, "activity") for c in self.profile_inputs]
        groups += ["related_products"] * (len(self.holding_prefixes) * len(self.product_ids))
        groups += ["popular_in_segment"] * len(self.segments) + ["life_stage"] * len(self.tiers)
        for name, levels in self.categories:
            groups += [_GROUP_OF_PROFILE.get(name, "activity")] * len(levels)
        groups += ["collaborative"] * len(self.product_ids)
        recent = {"products_added_3m", "products_added_1m"}
        pairs = zip(self.columns, groups, strict=True)
        return ["recent_activity" if c in recent else g for c, g in pairs]

    def _group_credits(
        self, record: FeatureRecord, walk: _ScoringWalk, product_indices: Sequence[int]
    ) -> list[dict[str, float]]:
        """:meth:`PreparedBoosted.contributions` from the walk's leaves."""
        indices = [int(j) for j in product_indices]
        if not indices:
            return []
        outputs = np.array(indices, dtype=np.int64)
        n_columns = len(self._groups)
        credits = self._flat.leaf_credits(walk.leaves, outputs, n_columns)
        pair = self._pair_flat if self._explains_pair else None
        if pair is not None and walk.pair_leaves is not None:  # the blend's second term
            credits = credits + self.pair_weight * pair.leaf_credits(
                walk.pair_leaves, outputs, n_columns
            )
        by_group = credits @ self._group_matrix
        out = []
        for row, grouped, j in zip(credits, by_group, indices, strict=True):
            contrib = dict(zip(REASON_TEXTS, grouped.tolist(), strict=True))
            own = self._own_history[j]
            if self._held_before(record, j):
                moved = float(row[own].sum())
                contrib["held_before"] += moved
                contrib["related_products"] -= moved
            contrib["popular"] = float(self._flat.bias[j] - self._mean_bias)
            if pair is not None:
                contrib["popular"] += self.pair_weight * float(pair.bias[j] - self._pair_mean_bias)
            out.append(contrib)
        return out

    def _held_before(self, record: FeatureRecord, product_index: int) -> bool:
        """The customer held the product at some snapshot of the lookback (or dropped it)."""
        pid = self.product_ids[product_index]
        for prefix in ("held_prev__", "dropped__", "times_held__"):
            value = _number(record.get(prefix + pid))
            if isinstance(value, int | float) and value > 0:
                return True
        return False

    def _own_history_columns(self) -> list[np.ndarray]:
        """Per product, the input columns of its own history (all but ``held__``)."""
        position = {name: i for i, name in enumerate(self.columns)}
        own = [p for p in self.holding_prefixes if p != "held__"]
        return [
            np.array([position[prefix + pid] for prefix in own], dtype=np.int64)
            for pid in self.product_ids
        ]

    def _derive_trees(self) -> None:
        """The flat trees (packed nodes, the leaves' credit paths), the mean class bias and
        the column -> reason group matrix: derived from the fitted numbers when the model
        is built or unpickled, never pickled, so a pickle holds only what training fitted."""
        self._flat = FlatTrees(self.trees)
        self._mean_bias = float(np.mean(self._flat.bias)) if len(self._flat.bias) else 0.0
        self._pair_flat = FlatTrees(self.pair_trees) if self.pair_trees is not None else None
        self._pair_mean_bias = (
            float(np.mean(self._pair_flat.bias)) if self._pair_flat is not None else 0.0
        )
        codes = list(REASON_TEXTS)
        matrix = np.zeros((len(self._groups), len(codes)))
        matrix[np.arange(len(self._groups)), [codes.index(g) for g in self._groups]] = 1.0
        self._group_matrix = matrix


@dataclass(frozen=True, eq=False, slots=True)
class PreparedBoosted:
    """One record scored by :meth:`BoostedRecommender.prepare`: ``scores`` (a propensity
    per product) and the scoring walk whose leaves each product's reasons are credited
    from, so an offer is explained without walking a tree again. It reads ``record``
    again for the reasons: the caller does not mutate the record meanwhile."""

    model: BoostedRecommender
    record: FeatureRecord
    walk: _ScoringWalk
    scores: np.ndarray

    def contributions(self, product_indices: Sequence[int]) -> list[dict[str, float]]:
        """Each reason group's share of each product's raw score (log-odds), in order.

        ``popular`` is the product's bias (its base rate) relative to the average product's;
        a customer's own history of this product counts as ``held_before`` when they held
        it within the lookback; products added lately as ``recent_activity``.
        """
        return self.model._group_credits(self.record, self.walk, product_indices)

    def reasons(self, product_indices: Sequence[int]) -> list[list[Reason]]:
        """For each product of ``product_indices`` (in order), the (up to three) groups
        that raise its score most for this customer; the strongest one alone if none
        raises it (an offer always carries an argument)."""
        out = []
        for contrib in self.contributions(product_indices):
            ranked = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)
            chosen = [code for code, value in ranked if value > 1e-12][:3] or [ranked[0][0]]
            out.append([Reason(code=code, text=REASON_TEXTS[code]) for code in chosen])
        return out


def _number(value: object) -> object:
    """Booleans as 0/1 and everything else unchanged (``floats`` handles None and text)."""
    if isinstance(value, bool):
        return float(value)
    return value
