"""Fetch what a decision needs about one customer from Redis, in ONE round trip.

Everything the request path reads comes back from a single command: the customer's
feature record (``GET``) and their contact-policy state (``ZRANGEBYSCORE`` of one sorted
set, see ``service.decision.contact_policy``), read by one ``EVAL`` of a two-line read-only script
(:data:`READ_SCRIPT`) - never a second round trip. Both keys carry the customer's hash
tag (``{pseudonym}``), so on a Redis Cluster the script runs on the one node that owns
the customer's slot. The live feature-set version comes from the in-memory serving state,
not from Redis. Without a live feature set only the contact state is read (one
``ZRANGEBYSCORE``): the fallback obeys it too.

Why a script rather than a pipeline of the two commands: the same single round trip, but
one command for the client to pack, send and parse - a pipeline would cost more client CPU
on every request. ``EVAL`` with the script's text rather than ``EVALSHA``: Redis caches the
compiled script either way, nothing breaks after a restart or failover empties its
script cache (no ``NOSCRIPT`` retry), and ``INFO commandstats`` tells the request path's
read (``eval``) from the audit writer's batches (``evalsha``).

While the service's Redis circuit breaker is open (``service.infra.breaker``) the read is refused
at once, without a network call, and the answer is the degraded fallback.

The read is a coroutine on the event loop (redis-py's asyncio client): no thread-pool hop
per request and no hand-over of the interpreter lock between the loop's thread and a
pool thread, either of which would cost CPU on every request. The service reads through a
``service.infra.coalesced_reads.CoalescedReader``: the reads of the requests that reach
this point in the same turn of the loop go out in one pipeline, each still one ``EVAL``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import orjson
import redis
import redis.asyncio
import redis.asyncio.cluster

from features.online_store import PSEUDONYM_KEYS, FeatureSetInfo, OnlineStore
from service.decision.contact_policy import ContactRead, ContactState
from service.decision.outcome import DegradedReason
from service.infra.breaker import BreakerOpenError
from service.infra.coalesced_reads import AsyncRedisClient, CoalescedReader
from service.infra.log import fields

log = logging.getLogger(__name__)


class DurationObserver(Protocol):
    def observe(self, amount: float) -> None: ...


@dataclass(frozen=True)
class FeatureLookup:
    """The customer's record, or why there is none (then the answer is degraded)."""

    record: dict[str, Any] | None
    feature_set: FeatureSetInfo | None  # the set the record was looked up in
    problem: DegradedReason | None
    contact: ContactState = field(default_factory=ContactState)  # known=False: unreadable
    redis_error: redis.RedisError | None = None  # what failed, for the Redis error counter
    scores: bytes | None = None  # the customer's precomputed scores (``core.precomputed``)
    raw_record: bytes | None = None  # ``record`` as read (the audit trail stores these bytes)


ReadClient = CoalescedReader | AsyncRedisClient
"""The service reads through a :class:`CoalescedReader`; tools and tests may pass the
client itself."""


async def fetch_features(
    client: ReadClient,
    store: OnlineStore,
    feature_set: FeatureSetInfo | None,
    customer_id: str,
    round_trip_seconds: DurationObserver | None = None,
    contact: ContactRead | None = None,
    scores_key: str | None = None,
    pseudonym: str | None = None,
) -> FeatureLookup:
    """Read the customer's record from ``feature_set`` (and ``contact``) in one round trip.

    ``scores_key``: the customer's precomputed scores (``core.precomputed``), read by the
    same script when the record and the contact state are (``READ_WITH_SCORES_SCRIPT``).
    ``pseudonym``: the customer's, when the caller has it (the store's pseudonymiser is
    not run twice per request). ``round_trip_seconds`` (a Prometheus histogram) observes
    every round trip made.
    """
    if feature_set is None and contact is None:
        return FeatureLookup(None, None, DegradedReason.NO_FEATURE_SET)
    key: str | None = None
    if feature_set is not None:
        key = (
            store.keys.record(feature_set.version, pseudonym)
            if pseudonym is not None and feature_set.record_keys == PSEUDONYM_KEYS
            else store.record_key(feature_set.version, customer_id, feature_set.record_keys)
        )
    started = time.perf_counter()
    try:
        raw_record, contact_rows, raw_scores = await _read(client, key, contact, scores_key)
    except BreakerOpenError as exc:
        # Refused without a round trip: nothing to time, and the breaker logged the outage
        # once (a line per request would flood the log). The caller counts it.
        return _unavailable(exc)
    except redis.RedisError as exc:
        _observe(round_trip_seconds, started)
        # The exception type only: a message could quote a key, and keys hold customer ids.
        log.warning("feature store unavailable", extra=fields(error=type(exc).__name__))
        return _unavailable(exc)
    _observe(round_trip_seconds, started)
    state = ContactState.decode(contact_rows) if contact_rows is not None else ContactState()
    if feature_set is None:
        return FeatureLookup(None, None, DegradedReason.NO_FEATURE_SET, state)
    if raw_record is None:
        return FeatureLookup(None, feature_set, DegradedReason.UNKNOWN_CUSTOMER, state)
    try:
        # By the set's record schema (a record of another schema is refused), or as JSON.
        record = store.decode(raw_record, feature_set)
    except (orjson.JSONDecodeError, ValueError) as exc:
        log.error(
            "undecodable feature record",
            extra=fields(feature_set=feature_set.version, error=type(exc).__name__),
        )
        return FeatureLookup(None, feature_set, DegradedReason.INVALID_FEATURE_RECORD, state)
    return FeatureLookup(record, feature_set, None, state, scores=raw_scores, raw_record=raw_record)


READ_SCRIPT = """
return {redis.call('GET', KEYS[1]),
        redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf', 'WITHSCORES')}
"""
"""KEYS: the feature record, the contact set; ARGV: the contact window's start. Lua gives
a missing record as ``false``, which Redis sends as nil; the scores come as the same
decimal strings as a plain ``ZRANGEBYSCORE ... WITHSCORES``."""

READ_WITH_SCORES_SCRIPT = """
return {redis.call('GET', KEYS[1]),
        redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf', 'WITHSCORES'),
        redis.call('GET', KEYS[3])}
"""
""":data:`READ_SCRIPT` plus KEYS[3], the customer's precomputed scores (same hash tag)."""


async def _read(
    client: ReadClient,
    key: str | None,
    contact: ContactRead | None,
    scores_key: str | None = None,
) -> tuple[bytes | None, list[tuple[bytes, float]] | None, bytes | None]:
    """The raw record (when ``key``), the contact rows (when ``contact``) and the
    precomputed scores (when ``scores_key`` and both others): one command."""
    if key is not None and contact is not None:
        if scores_key is not None:
            reply = await client.eval(
                READ_WITH_SCORES_SCRIPT, 3, key, contact.key, scores_key, contact.since
            )
            raw_record, flat, raw_scores = cast(list[Any], reply)
        else:
            reply = await client.eval(READ_SCRIPT, 2, key, contact.key, contact.since)
            raw_record, flat = cast(list[Any], reply)
            raw_scores = None
        rows = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
        return raw_record, rows, raw_scores
    if key is not None:
        return cast(bytes | None, await client.get(key)), None, None
    assert contact is not None
    only = await client.zrangebyscore(contact.key, contact.since, "+inf", withscores=True)
    return None, cast(list[tuple[bytes, float]], only), None


def _unavailable(exc: redis.RedisError) -> FeatureLookup:
    """Redis failed or the breaker is open: no record, contact state unknown."""
    unknown = ContactState(known=False)
    return FeatureLookup(
        None, None, DegradedReason.FEATURE_STORE_UNAVAILABLE, unknown, redis_error=exc
    )


def _observe(round_trip_seconds: DurationObserver | None, started: float) -> None:
    if round_trip_seconds is not None:
        round_trip_seconds.observe(time.perf_counter() - started)
