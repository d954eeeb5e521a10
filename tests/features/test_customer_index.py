"""``nbo audit reindex`` (features.customer_index) against a real Redis: the indexes it
rebuilds from the streams are the ones the service writes as it appends."""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from core.redis_keys import (
    customer_decisions_key,
    customer_events_key,
    decisions_key,
    events_key,
)
from core.settings import Settings
from features import customer_index
from features.customer_index import reindex
from service.infra.audit_writer import AuditWriter

ALICE, BOB = "a" * 64, "b" * 64


def _index(client: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    return list(client.zrange(key, 0, -1, withscores=True))


def _write_decisions(client: redis.Redis, settings: Settings, count: int) -> None:
    """``count`` decisions through the service's own audit writer (which indexes them)."""
    writer = AuditWriter(client, settings)
    for number in range(count):
        customer = ALICE if number % 3 else BOB
        writer.submit(f"{number:032x}", {"request_id": f"{number:032x}", "customer": customer})
    assert writer.flush(timeout=5)


def _plant_event(client: redis.Redis, settings: Settings, customer: str, millis: int) -> str:
    entry = client.xadd(
        events_key(settings.events_prefix),
        {"event_id": f"e{millis}", "type": "shown", "customer": customer},
        id=f"{millis}-0",
    )
    return entry.decode()


def test_rebuilt_decision_indexes_equal_the_service_s_own(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _write_decisions(redis_client, settings, 30)
    keys = [customer_decisions_key(settings.audit_prefix, c) for c in (ALICE, BOB)]
    written = {key: _index(redis_client, key) for key in keys}
    assert all(len(entries) >= 10 for entries in written.values())
    redis_client.delete(*keys)  # as if the decisions predated the index

    done = reindex(redis_client, settings)

    assert (done.decisions, done.decision_customers) == (30, 2)
    assert {key: _index(redis_client, key) for key in keys} == written
    for key in keys:
        assert settings.audit_index_ttl_seconds - 60 < redis_client.ttl(key)
        assert redis_client.ttl(key) <= settings.audit_index_ttl_seconds


def test_a_rerun_changes_nothing_and_keeps_a_longer_ttl(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _write_decisions(redis_client, settings, 9)
    key = customer_decisions_key(settings.audit_prefix, ALICE)
    before = _index(redis_client, key)
    redis_client.expire(key, settings.audit_index_ttl_seconds * 2)  # a newer decision's TTL
    reindex(redis_client, settings)
    reindex(redis_client, settings)
    assert _index(redis_client, key) == before
    assert redis_client.ttl(key) > settings.audit_index_ttl_seconds


def test_events_are_indexed_under_their_customer_and_stale_customers_get_none(
    settings: Settings, redis_client: redis.Redis
) -> None:
    now = int(time.time() * 1000)
    ttl_ms = settings.audit_index_ttl_seconds * 1000
    _plant_event(redis_client, settings, BOB, now - ttl_ms - 60_000)  # expired long ago
    recent = [_plant_event(redis_client, settings, ALICE, now - 5000 + i) for i in range(3)]

    done = reindex(redis_client, settings)

    assert (done.events, done.event_customers) == (4, 1)
    alice = customer_events_key(settings.events_prefix, ALICE)
    assert [member.decode() for member, _ in _index(redis_client, alice)] == recent
    assert not redis_client.exists(customer_events_key(settings.events_prefix, BOB))


def test_each_index_keeps_only_its_newest_entries(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customer_index, "CUSTOMER_INDEX_MAX", 4)
    stream = decisions_key(settings.audit_prefix)
    now = int(time.time() * 1000)
    ids = [
        redis_client.xadd(stream, {"d": orjson.dumps({"customer": ALICE})}, id=f"{now + i}-0")
        for i in range(10)
    ]
    reindex(redis_client, settings)
    key = customer_decisions_key(settings.audit_prefix, ALICE)
    assert [member for member, _ in _index(redis_client, key)] == ids[-4:]


def test_the_command_reports_what_it_indexed(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_decisions(redis_client, settings, 6)
    for name, value in {
        "NBO_HOME": str(settings.home),
        "NBO_REDIS_URL": str(settings.redis_url),
        "NBO_AUDIT_PREFIX": settings.audit_prefix,
        "NBO_EVENTS_PREFIX": settings.events_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["audit", "reindex"])
    assert result.exit_code == 0, result.output
    assert "6 decisions indexed under 2 customers, 0 events under 0 customers" in result.output
