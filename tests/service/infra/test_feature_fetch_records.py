"""The request path reads compact feature records: one round trip, the JSON record's values,
and a record its feature set's schema did not write is refused (degraded), never decoded."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import orjson
import pandas as pd
import pytest
import redis

from core.catalogue import Catalogue
from core.settings import Settings
from core.tables import Tables
from features.materialize import materialize
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.pointintime import compute_features, to_records
from features.record_codec import encode_frame
from features.record_schema import FORMAT, derive_schema
from service.decision.outcome import DegradedReason
from service.infra.breaker import CircuitBreaker
from service.infra.feature_fetch import FeatureLookup, fetch_features
from service.infra.redis_guard import connect_guarded_async
from tests.support.redis_monitor import monitored
from tests.support.tables import synthetic_tables

AS_OF = date(2025, 6, 30)


def synthetic_tables_for(catalogue: Catalogue) -> Tables:
    """The bank of this module (the same tables every call: a fixed seed)."""
    return synthetic_tables([p.id for p in catalogue.holdable], customers=200, months=6, seed=9)


@pytest.fixture(scope="module")
def frame(catalogue: Catalogue) -> pd.DataFrame:
    return compute_features(synthetic_tables_for(catalogue), AS_OF, catalogue)


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> OnlineStore:
    return OnlineStore.for_settings(redis_client, settings)


def fetch(
    settings: Settings, store: OnlineStore, info: FeatureSetInfo, customer: str
) -> FeatureLookup:
    async def run() -> FeatureLookup:
        reader = connect_guarded_async(settings, CircuitBreaker("redis", 5, 1.0))
        try:
            return await fetch_features(reader, store, info, customer)
        finally:
            await reader.aclose()

    return asyncio.run(run())


def test_a_compact_record_is_read_in_one_round_trip_as_its_json_form(
    catalogue: Catalogue,
    frame: pd.DataFrame,
    store: OnlineStore,
    settings: Settings,
    redis_url: str,
    key_prefix: str,
) -> None:
    info = materialize(synthetic_tables_for(catalogue), AS_OF, catalogue, store)
    assert info.record_schemas, "materialization writes compact records"
    expected = dict(to_records(frame))
    customer = str(frame.index[42])
    raw = store.client.get(store.record_key(info.version, customer))
    assert isinstance(raw, bytes) and raw[0] == FORMAT  # a compact record, not JSON

    lookups: list[FeatureLookup] = []
    with redis.Redis.from_url(redis_url) as watcher:
        seen = monitored(watcher, lambda: lookups.append(fetch(settings, store, info, customer)))
    sent = [c["command"] for c in seen if c["client_type"] != "lua" and key_prefix in c["command"]]
    assert len(sent) == 1, sent  # one round trip
    assert lookups[0].problem is None
    assert lookups[0].record == orjson.loads(orjson.dumps(expected[customer]))


def publish_compact(
    store: OnlineStore, frame: pd.DataFrame, written_with: FeatureSetInfo, meta: FeatureSetInfo
) -> None:
    """Records encoded with ``written_with``'s schema, published under ``meta``."""
    (schema,) = written_with.record_schemas
    for customer, raw in zip(frame.index, encode_frame(schema, frame), strict=True):
        store.client.set(store.record_key(meta.version, str(customer)), raw)
    store.publish(meta)


def info_with(frame: pd.DataFrame, *schemas) -> FeatureSetInfo:  # type: ignore[no-untyped-def]
    created = datetime.now(UTC)
    return FeatureSetInfo(
        version=make_version(AS_OF, created),
        as_of=AS_OF,
        created_at=created,
        customers=len(frame),
        feature_names=[str(c) for c in frame.columns],
        catalogue_version="test",
        record_schemas=tuple(schemas),
    )


def test_a_record_of_an_old_schema_is_refused_never_decoded(
    frame: pd.DataFrame, store: OnlineStore, settings: Settings
) -> None:
    old = derive_schema(frame)
    new = derive_schema(frame.assign(age=frame["age"].fillna(0) + 200))  # another age table
    assert new.id != old.id
    live = info_with(frame, new)
    publish_compact(store, frame, replace(live, record_schemas=(old,)), live)
    customer = str(frame.index[3])
    lookup = fetch(settings, store, live, customer)
    assert lookup.record is None
    assert lookup.problem is DegradedReason.INVALID_FEATURE_RECORD
    # The same record, read with the set it was written for, decodes.
    raw = store.client.get(store.record_key(live.version, customer))
    assert isinstance(raw, bytes)
    written_for = replace(live, record_schemas=(old,))
    assert store.decode(raw, written_for) == orjson.loads(
        orjson.dumps(dict(to_records(frame))[customer])
    )


def test_json_and_compact_records_are_never_mixed_up(
    frame: pd.DataFrame, store: OnlineStore, settings: Settings
) -> None:
    """A set without a schema in its meta (JSON records of before) is read as JSON; a
    compact record there, or a JSON record in a compact set, is refused."""
    schema = derive_schema(frame)
    customer = str(frame.index[0])
    json_set = info_with(frame)
    publish_compact(store, frame, info_with(frame, schema), json_set)
    assert (
        fetch(settings, store, json_set, customer).problem is DegradedReason.INVALID_FEATURE_RECORD
    )

    compact_set = info_with(frame, schema)
    store.write_records(compact_set.version, to_records(frame))
    store.publish(compact_set)
    assert (
        fetch(settings, store, compact_set, customer).problem
        is DegradedReason.INVALID_FEATURE_RECORD
    )

    legacy = info_with(frame)
    store.write_records(legacy.version, to_records(frame))
    store.publish(legacy)
    read = fetch(settings, store, legacy, customer)
    assert read.problem is None and read.record == orjson.loads(
        orjson.dumps(dict(to_records(frame))[customer])
    )
