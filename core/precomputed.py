"""Precomputed scores: a customer's recommender scores and reasons, and churn risk, per version.

The batch step ``nbo score recommendations`` (``training.precompute_scores``) scores every
customer of the live feature set with the champion recommender and churn model and writes,
per customer, one value (:func:`encode_scores`) under a *score set* version; the service
reads it in the same ``EVAL`` as the feature record and the contact state and uses it
instead of scoring online when the score set was made from exactly the feature set and the
model versions it serves with (:meth:`ScoreSetInfo.matches`).

Key layout (:class:`ScoreSetKeys`, under ``{feature_prefix}:scores``): a ``current``
pointer, a ``versions`` sorted set, per version a ``meta`` (:class:`ScoreSetInfo` as JSON)
and one value per customer keyed ``...:c:{<pseudonym>}`` - the customer's hash tag, the
same as their feature record's and contact state's, so one script reads all three on one
Redis Cluster node. A version is written completely, then its meta, then the pointer moves.

A customer's value: ``MAGIC``, the number of products (``uint16``), the scores as
little-endian float64 (exact, NaN and infinities included: the request path treats a
non-finite score as unscored), then an orjson object ``{"r": [[product index, [reason
index, ...]], ...], "c": [probability, [[code, text], ...]] | null}``. Recommender reasons
are indices into the score set's ``reasons`` table (a model's reasons are a small
vocabulary); churn reasons carry numbers in their text and are stored as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import orjson

from core.redis_keys import FeatureSetKeys
from core.redis_server import RedisClient
from core.scoring.base import Reason

MAGIC = b"NBS1"
_COUNT = struct.Struct("<H")
_HEAD = len(MAGIC) + _COUNT.size


class ScoresDecodeError(ValueError):
    """A stored value is not precomputed scores of this score set."""


class ScoreSetKeys(FeatureSetKeys):
    """The keys of score sets: the feature sets' layout (``current``, ``versions``,
    ``meta``, one hash-tagged key per customer) under ``{feature_prefix}:scores``."""

    def __init__(self, feature_prefix: str) -> None:
        super().__init__(f"{feature_prefix}:scores")

    def customer(self, version: str, pseudonym: str) -> str:
        """One customer's scores, hash-tagged by the customer's pseudonym like the record."""
        return self.record(version, pseudonym)


@dataclass(frozen=True)
class ModelRef:
    """A registered model version a score set was computed with."""

    name: str
    version: int


@dataclass(frozen=True)
class ScoreSetInfo:
    """What a published score set was computed from (its ``meta``)."""

    version: str
    feature_set: str  # the feature-set version whose records were scored
    recommender: ModelRef
    churn: ModelRef | None  # None: no churn model was served; no churn risk stored
    product_ids: tuple[str, ...]  # the order of the stored scores
    reasons: tuple[Reason, ...]  # the table the stored recommender reasons index
    created_at: datetime
    customers: int
    top_reasons: int  # products (by score) whose reasons were stored per customer

    def matches(
        self,
        feature_set: str | None,
        recommender: ModelRef | None,
        churn: ModelRef | None,
    ) -> bool:
        """True when this set was made from exactly that feature set and those models."""
        return (
            feature_set == self.feature_set
            and recommender == self.recommender
            and churn == self.churn
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "feature_set": self.feature_set,
                "recommender": _ref_json(self.recommender),
                "churn": _ref_json(self.churn) if self.churn is not None else None,
                "product_ids": list(self.product_ids),
                "reasons": [[r.code, r.text] for r in self.reasons],
                "created_at": self.created_at.astimezone(UTC).isoformat(),
                "customers": self.customers,
                "top_reasons": self.top_reasons,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> ScoreSetInfo:
        data = orjson.loads(raw)
        churn = data.get("churn")
        return cls(
            version=str(data["version"]),
            feature_set=str(data["feature_set"]),
            recommender=ModelRef(
                str(data["recommender"]["name"]), int(data["recommender"]["version"])
            ),
            churn=ModelRef(str(churn["name"]), int(churn["version"])) if churn else None,
            product_ids=tuple(str(p) for p in data["product_ids"]),
            reasons=tuple(Reason(str(c), str(t)) for c, t in data["reasons"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            customers=int(data["customers"]),
            top_reasons=int(data["top_reasons"]),
        )

    def decode(self, raw: bytes) -> PrecomputedScores:
        """One customer's stored value (see the module docstring); ``ScoresDecodeError`` if
        it is not one of this set's."""
        if raw[: len(MAGIC)] != MAGIC or len(raw) < _HEAD:
            raise ScoresDecodeError("not a precomputed-scores value")
        (n,) = _COUNT.unpack_from(raw, len(MAGIC))
        end = _HEAD + 8 * n
        if n != len(self.product_ids) or len(raw) < end:
            raise ScoresDecodeError("precomputed scores of another product list")
        scores = np.frombuffer(raw, dtype="<f8", count=n, offset=_HEAD)
        try:
            rest = orjson.loads(raw[end:])
            table = self.reasons
            reasons = {int(j): [table[i] for i in codes] for j, codes in rest["r"]}
            churn = rest["c"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ScoresDecodeError(f"malformed precomputed scores ({type(exc).__name__})") from exc
        return PrecomputedScores(
            scores=scores,
            reasons=reasons,
            churn_probability=float(churn[0]) if churn is not None else None,
            churn_reasons=[Reason(c, t) for c, t in churn[1]] if churn is not None else [],
        )


def _ref_json(ref: ModelRef) -> dict[str, Any]:
    return {"name": ref.name, "version": ref.version}


@dataclass(frozen=True, slots=True)
class PrecomputedScores:
    """One customer's precomputed scores, the reasons of their top products, churn risk."""

    scores: np.ndarray  # per product, in the score set's product order
    reasons: dict[int, list[Reason]]  # product index -> its model reasons (top products)
    churn_probability: float | None  # None: the set was made without a churn model
    churn_reasons: list[Reason]


def encode_scores(
    scores: np.ndarray,
    reasons: Sequence[tuple[int, Sequence[int]]],
    churn: tuple[float, Sequence[Reason]] | None,
) -> bytes:
    """One customer's value: ``reasons`` as (product index, reason-table indices)."""
    values = np.asarray(scores, dtype="<f8")
    body = orjson.dumps(
        {
            "r": [[int(j), [int(i) for i in codes]] for j, codes in reasons],
            "c": (
                [float(churn[0]), [[r.code, r.text] for r in churn[1]]]
                if churn is not None
                else None
            ),
        }
    )
    return MAGIC + _COUNT.pack(len(values)) + values.tobytes() + body


def current_score_set(client: RedisClient, keys: ScoreSetKeys) -> ScoreSetInfo | None:
    """The published score set (pointer, then its meta), or None when there is none."""
    version = cast(bytes | None, client.get(keys.current))
    if version is None:
        return None
    raw = cast(bytes | None, client.get(keys.meta(version.decode())))
    return ScoreSetInfo.from_json(raw) if raw is not None else None
