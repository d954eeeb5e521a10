"""The Redis online store and materialization, on a real Redis: versions, switch, abort, CLI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest
import redis
from typer.testing import CliRunner

from cli.features import app
from core.catalogue import Catalogue
from core.moments import default_moments
from core.settings import Settings, get_settings
from core.tables import Tables, write_tables
from features.materialize import materialize
from features.online_store import (
    CUSTOMER_ID_KEYS,
    PSEUDONYM_KEYS,
    FeatureSetInfo,
    OnlineStore,
    make_version,
)
from features.pointintime import compute_features, to_records
from tests.support.tables import synthetic_tables

AS_OF = date(2025, 6, 30)


@pytest.fixture(scope="module")
def tables(catalogue: Catalogue) -> Tables:
    return synthetic_tables([p.id for p in catalogue.holdable], customers=400, months=6, seed=3)


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> OnlineStore:
    return OnlineStore.for_settings(redis_client, settings)


def version_keys(store: OnlineStore, version: str) -> list[bytes]:
    return list(store.client.scan_iter(match=f"{store.prefix}:v:{version}:*", count=1000))


def info_for(version_as_of: date, created_at: datetime, customers: int = 1) -> FeatureSetInfo:
    return FeatureSetInfo(
        version=make_version(version_as_of, created_at),
        as_of=version_as_of,
        created_at=created_at,
        customers=customers,
        feature_names=["age"],
        catalogue_version="test",
    )


def test_materialize_then_read_round_trip(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    assert store.current() is None
    info = materialize(tables, AS_OF, catalogue, store, batch_size=97)
    frame = compute_features(tables, AS_OF, catalogue)

    current = store.current()
    assert current == info
    assert current.as_of == AS_OF and current.customers == len(frame)
    assert current.feature_names == list(frame.columns)
    assert current.catalogue_version == catalogue.version
    assert current.moments_version == default_moments().version
    assert current.created_at.tzinfo is not None
    assert len(version_keys(store, info.version)) == len(frame) + 1  # records + meta

    customer_id = frame.index[17]
    record = store.read(info.version, customer_id)
    assert record is not None
    assert record["held"] == list(frame.loc[customer_id, "held"])
    assert record["n_products"] == frame.loc[customer_id, "n_products"]
    assert record["balance"] == pytest.approx(frame.loc[customer_id, "balance"])
    assert set(record) == set(frame.columns)
    assert store.read(info.version, "no-such-customer") is None


def test_record_key_and_decode_follow_the_contract(store: OnlineStore) -> None:
    pseudonym = store.pseudonymise("C42")
    assert pseudonym != "C42" and len(pseudonym) == 64
    # Keyed by the pseudonym, inside the customer's Redis Cluster hash tag.
    assert store.record_key("v1", "C42") == f"{store.prefix}:v:v1:c:{{{pseudonym}}}"
    assert store.record_key("v1", "C42", CUSTOMER_ID_KEYS) == f"{store.prefix}:v:v1:c:C42"
    assert store.decode(orjson.dumps({"age": None, "held": ["funds"]})) == {
        "age": None,
        "held": ["funds"],
    }


def test_the_customer_hash_tag_puts_record_and_contact_state_in_one_slot(
    store: OnlineStore, settings: Settings
) -> None:
    from redis.cluster import key_slot

    from core.redis_keys import contact_key

    for customer in ("C1", "C42", "S0004026"):
        record = store.record_key("20260101-x", customer).encode()
        contact = contact_key(settings.contact_prefix, store.pseudonymise(customer)).encode()
        assert key_slot(record) == key_slot(contact)
    assert key_slot(store.record_key("v", "C1").encode()) != key_slot(
        store.record_key("v", "C2").encode()
    )


def test_a_feature_set_of_the_previous_layout_is_still_read(store: OnlineStore) -> None:
    """Metadata without ``record_keys``: written before the hash-tagged layout, records keyed
    by the raw customer id. The service and the tools go on reading it until the next
    materialization."""
    info = info_for(AS_OF, datetime.now(UTC))
    legacy_meta = orjson.loads(info.to_json())
    del legacy_meta["record_keys"]
    store.client.set(store.keys.meta(info.version), orjson.dumps(legacy_meta))
    store.client.set(f"{store.prefix}:v:{info.version}:c:C7", orjson.dumps({"age": 41}))
    store.client.zadd(store.keys.versions, {info.version: 1.0})
    store.client.set(store.keys.current, info.version)

    current = store.current()
    assert current is not None and current.record_keys == CUSTOMER_ID_KEYS
    assert store.read(info.version, "C7") == {"age": 41}
    assert FeatureSetInfo.from_json(info.to_json()).record_keys == PSEUDONYM_KEYS


def test_readers_see_the_old_version_until_publish(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    old = materialize(tables, AS_OF, catalogue, store)
    new = info_for(AS_OF, datetime.now(UTC) + timedelta(seconds=1))
    store.write_records(new.version, [("C0000001", {"age": 99})], batch_size=10)

    assert store.current() == old
    assert store.versions() == [old.version]

    store.publish(new)
    assert store.current() == new
    assert store.versions() == [new.version, old.version]
    assert store.read(new.version, "C0000001") == {"age": 99}


def test_prune_keeps_the_newest_versions(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    published = [materialize(tables, AS_OF, catalogue, store, keep_versions=2) for _ in range(4)]
    kept = [published[3].version, published[2].version]
    assert store.versions() == kept
    assert store.current() == published[3]
    for gone in published[:2]:
        assert version_keys(store, gone.version) == []
    for alive in kept:
        assert len(version_keys(store, alive)) == published[0].customers + 1


def test_prune_never_deletes_the_current_version(store: OnlineStore) -> None:
    now = datetime.now(UTC)
    older, newer = info_for(AS_OF, now), info_for(AS_OF, now + timedelta(seconds=5))
    for info in (newer, older):  # the older one is published last: it is current
        store.write_records(info.version, [("C1", {"age": 1})])
        store.publish(info)
    assert store.prune(keep=1) == []
    assert store.versions() == [newer.version, older.version]
    with pytest.raises(ValueError, match="it is current"):
        store.delete_version(older.version)


def test_failing_progress_callback_leaves_no_trace(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    old = materialize(tables, AS_OF, catalogue, store)
    seen: list[int] = []

    def explode(written: int, total: int) -> None:
        seen.append(written)
        if len(seen) == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        materialize(tables, AS_OF, catalogue, store, batch_size=50, progress=explode)
    assert seen == [50, 100]
    assert store.current() == old
    assert store.versions() == [old.version]
    keys = list(store.client.scan_iter(match=f"{store.prefix}:v:*", count=1000))
    assert keys and all(k.decode().startswith(f"{store.prefix}:v:{old.version}:") for k in keys)


def test_records_failing_halfway_leave_no_trace(
    tables: Tables, catalogue: Catalogue, store: OnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after three batches were written: the partial version goes."""
    old = materialize(tables, AS_OF, catalogue, store)
    real_set_many = store._set_many
    batches: list[int] = []

    def dropping(keys: list[str], values: list[bytes]) -> None:
        if len(batches) == 3:
            raise redis.ConnectionError("connection reset mid-way")
        real_set_many(keys, values)
        batches.append(len(keys))

    monkeypatch.setattr(store, "_set_many", dropping)
    with pytest.raises(redis.ConnectionError, match="mid-way"):
        materialize(tables, AS_OF, catalogue, store, batch_size=40)
    assert batches == [40, 40, 40]
    assert store.current() == old
    keys = list(store.client.scan_iter(match=f"{store.prefix}:v:*", count=1000))
    assert len(keys) == old.customers + 1


def test_as_of_before_the_data_is_a_clear_error(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    with pytest.raises(ValueError, match="precedes every holdings snapshot"):
        materialize(tables, date(2020, 1, 1), catalogue, store)
    assert store.current() is None


def test_no_customers_is_a_clear_error(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    everyone_left = Tables(
        customers=tables.customers.assign(left_on=tables.customers["joined_on"]),
        holdings=tables.holdings,
        behaviour=tables.behaviour,
    )
    with pytest.raises(ValueError, match="no customers"):
        materialize(everyone_left, AS_OF, catalogue, store)
    assert list(store.client.scan_iter(match=f"{store.prefix}:*")) == []


def test_abort_of_an_unknown_version_is_harmless(store: OnlineStore) -> None:
    assert store.abort("19990101-never") == 0


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, redis_url: str) -> Iterator[dict[str, str]]:
    get_settings.cache_clear()
    yield {
        "NBO_HOME": str(settings.home),
        "NBO_REDIS_URL": redis_url,
        "NBO_FEATURE_PREFIX": settings.feature_prefix,
        "NBO_FEATURE_VERSIONS_KEPT": "2",
    }
    get_settings.cache_clear()


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_materialize_status_show(
    tables: Tables, catalogue: Catalogue, settings: Settings, cli_env: dict[str, str]
) -> None:
    write_tables(tables, settings.data_dir, [p.id for p in catalogue.holdable])

    result = invoke(cli_env, "materialize", "--as-of", "2025-05-31", "--batch-size", "64")
    assert result.exit_code == 0, result.output
    assert "customers" in result.stdout and "customers/s" in result.stdout

    latest = invoke(cli_env, "materialize")  # defaults to the latest snapshot month
    assert latest.exit_code == 0, latest.output
    store = OnlineStore(redis.Redis.from_url(cli_env["NBO_REDIS_URL"]), settings.feature_prefix)
    current = store.current()
    assert current is not None and current.as_of == AS_OF
    assert len(store.versions()) == 2

    status = invoke(cli_env, "status")
    assert status.exit_code == 0, status.output
    assert current.version in status.stdout and "2025-06-30" in status.stdout

    customer_id = next(iter(compute_features(tables, AS_OF, catalogue).index))
    shown = invoke(cli_env, "show", customer_id)
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.stdout) == store.read(current.version, customer_id)

    missing = invoke(cli_env, "show", "nobody")
    assert missing.exit_code == 1 and "nobody" not in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["materialize", "--as-of", "31/10/2026"], "not a date"),
        (["materialize", "--as-of", "2001-01-31"], "precedes every holdings snapshot"),
    ],
)
def test_cli_bad_input_exits_2(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    cli_env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    write_tables(tables, settings.data_dir, [p.id for p in catalogue.holdable])
    result = invoke(cli_env, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_cli_without_tables_exits_2(cli_env: dict[str, str]) -> None:
    result = invoke(cli_env, "materialize")
    assert result.exit_code == 2
    assert "no canonical tables" in result.stderr


def test_cli_with_redis_down_exits_2(
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    write_tables(tables, settings.data_dir, [p.id for p in catalogue.holdable])
    env = {**cli_env, "NBO_REDIS_URL": "redis://127.0.0.1:1/0"}
    for args in (["materialize"], ["status"], ["show", "C1"]):
        result = invoke(env, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Redis unavailable" in result.stderr


def test_redis_migrate_keys_renames_the_previous_layout(
    settings: Settings, redis_client: redis.Redis, cli_env: dict[str, str]
) -> None:
    """Keys written before the hash-tagged layout (no braces) are renamed once, TTLs kept;
    a contact set that already has a new key is merged into it."""
    from cli.redis_cmd import app as redis_app
    from core.pseudonym import pseudonymiser
    from core.redis_keys import (
        contact_key,
        decision_index_key,
        decisions_key,
        event_seen_key,
        events_key,
    )
    from features.audit_export import read_decision

    env = {
        **cli_env,
        "NBO_CONTACT_PREFIX": settings.contact_prefix,
        "NBO_EVENTS_PREFIX": settings.events_prefix,
        "NBO_AUDIT_PREFIX": settings.audit_prefix,
    }
    pseudonym = pseudonymiser(settings)
    alone, both = pseudonym("C1"), pseudonym("C2")
    redis_client.zadd(f"{settings.contact_prefix}:{alone}", {"s|funds|app|e1": 10.0})
    redis_client.expire(f"{settings.contact_prefix}:{alone}", 5000)
    redis_client.zadd(f"{settings.contact_prefix}:{both}", {"d|loans|app|e2": 20.0})
    redis_client.zadd(contact_key(settings.contact_prefix, both), {"s|funds|app|e3": 30.0})
    entry = redis_client.xadd(f"{settings.audit_prefix}:decisions", {"d": b'{"n": 1}'})
    redis_client.set(f"{settings.audit_prefix}:req:{'a' * 32}", entry, ex=4000)
    event = redis_client.xadd(f"{settings.events_prefix}:stream", {"event_id": "e1"})
    redis_client.set(f"{settings.events_prefix}:seen:e1", event, ex=3000)

    get_settings.cache_clear()
    result = CliRunner().invoke(redis_app, ["migrate-keys"], env=env)
    assert result.exit_code == 0, result.output
    assert "contact: 2 keys renamed" in result.stdout
    assert "audit: 1 keys renamed" in result.stdout and "events: 1 keys renamed" in result.stdout

    new_alone = contact_key(settings.contact_prefix, alone)
    assert redis_client.zrange(new_alone, 0, -1) == [b"s|funds|app|e1"]
    assert 4990 < redis_client.ttl(new_alone) <= 5000
    assert redis_client.zrange(contact_key(settings.contact_prefix, both), 0, -1) == [
        b"d|loans|app|e2",
        b"s|funds|app|e3",
    ]
    assert redis_client.xlen(decisions_key(settings.audit_prefix)) == 1
    assert 3990 < redis_client.ttl(decision_index_key(settings.audit_prefix, "a" * 32)) <= 4000
    found = read_decision(redis_client, settings, "a" * 32)
    assert found is not None and found["n"] == 1
    assert redis_client.xlen(events_key(settings.events_prefix)) == 1
    assert redis_client.get(event_seen_key(settings.events_prefix, "e1")) == event
    old = [f"{settings.contact_prefix}:{alone}", f"{settings.audit_prefix}:decisions"]
    old += [f"{settings.events_prefix}:stream", f"{settings.events_prefix}:seen:e1"]
    assert redis_client.exists(*old) == 0

    get_settings.cache_clear()
    again = CliRunner().invoke(redis_app, ["migrate-keys"], env=env)
    assert again.exit_code == 0 and "contact: 0 keys renamed" in again.stdout


def test_departed_customers_are_published_flagged_for_win_back(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    """A customer who left before as_of (within the win-back window) is in the published
    set, flagged, at stage churned; one still with the bank is not flagged."""
    info = materialize(tables, AS_OF, catalogue, store)
    left = pd.to_datetime(tables.customers["left_on"])
    gone = tables.customers.loc[(left <= pd.Timestamp(AS_OF)).to_numpy(), "customer_id"]
    published = [r for r in (store.read(info.version, c) for c in gone) if r is not None]
    assert published, "the fixture bank should have customers who left before as_of"
    assert all(r["departed"] and r["lifecycle_stage"] == "churned" for r in published)
    assert all(isinstance(r["months_since_left"], int) for r in published)
    staying = tables.customers.loc[left.isna().to_numpy(), "customer_id"].iloc[0]
    record = store.read(info.version, staying)
    assert record is not None and record["departed"] is False
    assert record["months_since_left"] is None


def test_partitions_written_with_two_schemas_are_all_read(
    tables: Tables, catalogue: Catalogue, store: OnlineStore
) -> None:
    """``write_frame`` per partition, each given the previous partition's schema: a partition
    that does not fit it is written with a joined schema, and the set's meta lists both."""
    frame = compute_features(tables, AS_OF, catalogue)
    first, second = frame.iloc[:150], frame.iloc[150:].copy()
    second["tier"] = "private_plus"  # a value the first partition's tier table lacks
    info = info_for(AS_OF, datetime.now(UTC), customers=len(frame))
    schema_a = store.write_frame(info.version, first, batch_size=64)
    schema_b = store.write_frame(info.version, second, schema=schema_a, batch_size=64)
    assert schema_b.id != schema_a.id
    published = replace(info, record_schemas=(schema_a, schema_b))
    store.publish(published)

    current = store.current()
    assert current == published
    for part in (first, second):
        expected = dict(to_records(part))
        for customer in part.index[::25]:
            assert store.read(info.version, customer) == orjson.loads(
                orjson.dumps(expected[customer])
            )
    only_a = replace(published, record_schemas=(schema_a,))
    raw = store.client.get(store.record_key(info.version, second.index[0]))
    assert isinstance(raw, bytes)
    with pytest.raises(ValueError, match="schema"):
        only_a.decode(raw)
