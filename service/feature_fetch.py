"""Fetch what a decision needs about one customer from Redis, in ONE round trip.

Everything the request path reads goes into a single non-transactional pipeline: today
the customer's feature record; tomorrow the contact-policy state and anything else, as
more commands in the same pipeline (never a second round trip). The live feature-set
version comes from the in-memory serving state, not from Redis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from features.online_store import FeatureSetInfo, OnlineStore
from service.decision import DegradedReason
from service.log import fields

log = logging.getLogger(__name__)


class DurationObserver(Protocol):
    def observe(self, amount: float) -> None: ...


@dataclass(frozen=True)
class FeatureLookup:
    """The customer's record, or why there is none (then the answer is degraded)."""

    record: dict[str, Any] | None
    feature_set: FeatureSetInfo | None  # the set the record was looked up in
    problem: DegradedReason | None


def fetch_features(
    client: redis.Redis,
    store: OnlineStore,
    feature_set: FeatureSetInfo | None,
    customer_id: str,
    round_trip_seconds: DurationObserver | None = None,
) -> FeatureLookup:
    """Read the customer's record from ``feature_set`` with one pipelined round trip.

    ``round_trip_seconds`` (a Prometheus histogram) observes every round trip made.
    """
    if feature_set is None:
        return FeatureLookup(None, None, DegradedReason.NO_FEATURE_SET)
    pipe = client.pipeline(transaction=False)
    pipe.get(store.record_key(feature_set.version, customer_id))
    started = time.perf_counter()
    try:
        (raw_record,) = pipe.execute()
    except redis.RedisError as exc:
        # The exception type only: a message could quote a key, and keys hold customer ids.
        log.warning("feature store unavailable", extra=fields(error=type(exc).__name__))
        return FeatureLookup(None, None, DegradedReason.FEATURE_STORE_UNAVAILABLE)
    finally:
        if round_trip_seconds is not None:
            round_trip_seconds.observe(time.perf_counter() - started)
    if raw_record is None:
        return FeatureLookup(None, feature_set, DegradedReason.UNKNOWN_CUSTOMER)
    try:
        record = store.decode(raw_record)
    except (orjson.JSONDecodeError, ValueError) as exc:
        log.error(
            "undecodable feature record",
            extra=fields(feature_set=feature_set.version, error=type(exc).__name__),
        )
        return FeatureLookup(None, feature_set, DegradedReason.INVALID_FEATURE_RECORD)
    return FeatureLookup(record, feature_set, None)
