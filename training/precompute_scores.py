"""``nbo score recommendations``: every customer's scores, top reasons and churn risk, ahead.

For the live feature set and the served (``serving_alias``) recommender and churn model,
read every customer's feature record from the online store - the very bytes the request
path decodes - score it as the request path would (``prepare`` -> scores; the reasons of
the ``top_reasons`` best-scored products; the churn model's ``assess`` or
``predict_proba`` + ``reasons``) and write one value per customer under a new score-set
version (``core.precomputed``). The version becomes visible only once every customer is
written: its meta is written, then the ``current`` pointer moves. A failure deletes what
the run wrote; older score sets beyond ``keep`` are deleted after the switch.

The service uses a score set only when its feature set and model versions are the ones it
serves with; any other request is scored online, so a run that lags behind a new feature
set or a hot-reloaded model costs CPU, never a wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import redis

from core.precomputed import ModelRef, ScoreSetInfo, ScoreSetKeys, encode_scores
from core.redis_server import RedisClient
from core.scoring.base import ChurnScorer, Reason, RecommenderScorer, churn_assessment
from core.settings import Settings
from features.online_store import PSEUDONYM_KEYS, FeatureSetInfo, OnlineStore
from registry.client import ModelNotFoundError, Registry

BATCH = 500
"""Customers read (one pipelined round trip of ``GET`` s) and written per step."""
TOP_REASONS = 8
"""Products, best scores first, whose reasons are stored per customer; an offer outside
them (its betters all filtered out) is explained online from the record."""
MAX_REASON_TABLE = 4096
SCAN_COUNT = 1000


class PrecomputeError(ValueError):
    """The score set cannot be computed (no feature set, no model, a bad record, ...)."""


Progress = Callable[[int, int], None]
"""Receives ``(customers done, customers total)`` after each batch."""


def served_models(
    registry: Registry, settings: Settings
) -> tuple[tuple[ModelRef, RecommenderScorer], tuple[ModelRef, ChurnScorer] | None]:
    """The recommender and churn model behind ``serving_alias`` (what the service loads);
    no churn model registered -> None (the service then serves without churn risk)."""
    alias = settings.serving_alias
    try:
        rec = registry.load(settings.recommender_model_name, alias)
    except ModelNotFoundError as exc:
        raise PrecomputeError(f"no recommender to score with: {exc}") from exc
    if getattr(rec.scorer, "kind", None) != "recommender":
        raise PrecomputeError(f"{rec.name} version {rec.version} is not a recommender")
    try:
        churn = registry.load(settings.churn_model_name, alias)
    except ModelNotFoundError:
        return (ModelRef(rec.name, rec.version), cast(RecommenderScorer, rec.scorer)), None
    if getattr(churn.scorer, "kind", None) != "churn":
        raise PrecomputeError(f"{churn.name} version {churn.version} is not a churn model")
    return (
        (ModelRef(rec.name, rec.version), cast(RecommenderScorer, rec.scorer)),
        (ModelRef(churn.name, churn.version), cast(ChurnScorer, churn.scorer)),
    )


def precompute_scores(
    client: RedisClient,
    store: OnlineStore,
    recommender: tuple[ModelRef, RecommenderScorer],
    churn: tuple[ModelRef, ChurnScorer] | None,
    *,
    top_reasons: int = TOP_REASONS,
    keep: int = 2,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ScoreSetInfo:
    """Score the live feature set of ``store``; publish and return the new score set."""
    if top_reasons < 0:
        raise PrecomputeError(f"top_reasons must be 0 or more, not {top_reasons}")
    if keep < 1:
        raise PrecomputeError(f"keep must be at least 1, not {keep}")
    info = store.current()
    if info is None:
        raise PrecomputeError("no feature set is published: run `nbo features materialize` first")
    if info.record_keys != PSEUDONYM_KEYS:
        raise PrecomputeError(
            f"feature set {info.version} keys its records by raw customer id (made before "
            "pseudonymous keys): materialize a new one first"
        )
    rec_ref, rec_model = recommender
    keys = ScoreSetKeys(store.prefix)
    created = (now or datetime.now(UTC)).astimezone(UTC)
    version = f"{info.version}.{created:%Y%m%dT%H%M%S%fZ}"
    table: dict[Reason, int] = {}
    written = 0
    try:
        for batch in _record_batches(client, store, info):
            values = [
                _encode_one(raw_key, raw, info, rec_model, churn, top_reasons, table)
                for raw_key, raw in batch
            ]
            pipe = client.pipeline(transaction=False)
            for (raw_key, _), value in zip(batch, values, strict=True):
                pipe.set(keys.customer(version, _pseudonym(raw_key)), value)
            pipe.execute()
            written += len(batch)
            if progress is not None:
                progress(written, info.customers)
        if written == 0:
            raise PrecomputeError(f"feature set {info.version} has no customer records")
        published = ScoreSetInfo(
            version=version,
            feature_set=info.version,
            recommender=rec_ref,
            churn=churn[0] if churn is not None else None,
            product_ids=tuple(rec_model.product_ids),
            reasons=tuple(table),
            created_at=created,
            customers=written,
            top_reasons=top_reasons,
        )
        pipe = client.pipeline(transaction=False)
        pipe.set(keys.meta(version), published.to_json())
        pipe.zadd(keys.versions, {version: created.timestamp()})
        pipe.execute()
        client.set(keys.current, version)
    except BaseException:
        _delete_version(client, keys, version)
        raise
    for old in _older_versions(client, keys, keep):
        _delete_version(client, keys, old)
    return published


def _record_batches(
    client: RedisClient, store: OnlineStore, info: FeatureSetInfo
) -> Iterator[list[tuple[str, bytes]]]:
    """(record key, raw record) of every customer of ``info``, ``BATCH`` at a time."""
    pattern = store.keys.version_pattern(info.version)
    meta = store.keys.meta(info.version)
    pending: list[str] = []
    for raw_key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        if key == meta:
            continue
        pending.append(key)
        if len(pending) == BATCH:
            yield _get_many(client, pending)
            pending = []
    if pending:
        yield _get_many(client, pending)


def _get_many(client: RedisClient, keys: list[str]) -> list[tuple[str, bytes]]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    values = cast(list[Any], pipe.execute())
    return [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]


def _pseudonym(record_key: str) -> str:
    start, end = record_key.rfind("{"), record_key.rfind("}")
    if start < 0 or end < start:
        raise PrecomputeError(f"record key without a customer hash tag: {record_key}")
    return record_key[start + 1 : end]


def _encode_one(
    record_key: str,
    raw: bytes,
    info: FeatureSetInfo,
    recommender: RecommenderScorer,
    churn: tuple[ModelRef, ChurnScorer] | None,
    top_reasons: int,
    table: dict[Reason, int],
) -> bytes:
    try:
        record = info.decode(raw)
    except ValueError as exc:
        raise PrecomputeError(
            f"{record_key}: feature record cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    prepared = recommender.prepare(record)
    scores = np.asarray(prepared.scores, dtype=np.float64)
    if len(scores) != len(recommender.product_ids):
        raise PrecomputeError(
            f"recommender returned {len(scores)} scores for {len(recommender.product_ids)} products"
        )
    top = [int(j) for j in _best(scores, top_reasons)]
    explained = prepared.reasons(top) if top else []
    reasons = []
    for j, product_reasons in zip(top, explained, strict=True):
        codes = []
        for reason in product_reasons:
            index = table.setdefault(reason, len(table))
            if len(table) > MAX_REASON_TABLE:
                raise PrecomputeError(
                    f"the recommender's reasons are not a small vocabulary (over "
                    f"{MAX_REASON_TABLE} distinct): store them online"
                )
            codes.append(index)
        reasons.append((j, codes))
    churn_value = _churn(churn[1], record) if churn is not None else None
    return encode_scores(scores, reasons, churn_value)


def _best(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` best finite scores, best first (ties: lower index first)."""
    order = sorted(
        (j for j in range(len(scores)) if math.isfinite(scores[j])), key=lambda j: -scores[j]
    )
    return order[:n]


def _churn(model: ChurnScorer, record: dict[str, Any]) -> tuple[float, list[Reason]]:
    """What ``service.decision.churn_risk.assess_churn_risk`` computes from the model."""
    try:
        return churn_assessment(model, record)
    except ValueError as exc:
        raise PrecomputeError(str(exc)) from exc


def _older_versions(client: RedisClient, keys: ScoreSetKeys, keep: int) -> list[str]:
    members = cast(list[bytes], client.zrevrange(keys.versions, keep, -1))
    return [m.decode() for m in members]


def _delete_version(client: RedisClient, keys: ScoreSetKeys, version: str) -> None:
    """Every key of ``version`` (best effort on a failing Redis: the error already raised
    is the one to report)."""
    try:
        batch: list[Any] = []
        for key in client.scan_iter(match=keys.version_pattern(version), count=SCAN_COUNT):
            batch.append(key)
            if len(batch) == 1000:
                _unlink(client, batch)
                batch = []
        if batch:
            _unlink(client, batch)
        client.zrem(keys.versions, version)
    except redis.RedisError:
        pass


def _unlink(client: RedisClient, batch: list[Any]) -> None:
    pipe = client.pipeline(transaction=False)
    for key in batch:
        pipe.unlink(key)
    pipe.execute()
