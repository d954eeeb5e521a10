"""Feature records packed in the audit trail (``features.audit_features``), written by the
real audit writer to a real Redis and read back by every reader of the trail."""

from __future__ import annotations

import base64
import uuid

import orjson
import pandas as pd
import pytest
import redis

from cli.registry import recent_decisions
from core.redis_keys import audit_schema_key, decisions_key
from core.settings import Settings
from features.audit_export import read_decision, read_decisions
from features.audit_features import PACKED, UNREADABLE, pack
from features.record_codec import encode_frame, schema_for
from features.record_schema import RecordSchema
from service.console.timeline import read_page
from service.decision.audit_record import packable
from service.infra import audit_writer
from service.infra.audit_writer import AuditWriter
from tests.support.records import adult

CUSTOMER = "p" * 64  # a pseudonym: what the trail's customer index is keyed by


def compact(**overrides: object) -> tuple[RecordSchema, list[bytes], pd.DataFrame]:
    """Two customers' records as a feature set would store them, with their schema."""
    frame = pd.DataFrame.from_records(
        [adult(**overrides), adult(age=61, **overrides)], index=["C-1", "C-2"]
    )
    schema = schema_for(frame)
    return schema, encode_frame(schema, frame), frame


def decision(request_id: str, raw: bytes) -> dict[str, object]:
    return {"request_id": request_id, "customer": CUSTOMER, PACKED: pack(raw), "offers": []}


def test_packed_records_are_written_with_their_schema_and_read_back_as_the_record(
    settings: Settings, redis_client: redis.Redis
) -> None:
    schema, raws, frame = compact(segment=f"s-{uuid.uuid4().hex}")  # a schema new to Redis
    writer = AuditWriter(redis_client, settings)
    ids = [f"{n:032x}" for n in range(2)]
    for request_id, raw in zip(ids, raws, strict=True):
        assert writer.submit(request_id, decision(request_id, raw), schema)
    assert writer.flush(timeout=5)

    stored = redis_client.get(audit_schema_key(settings.audit_prefix, schema.id))
    assert stored is not None and RecordSchema.from_json(orjson.loads(stored)) == schema
    assert redis_client.ttl(audit_schema_key(settings.audit_prefix, schema.id)) == -1
    entries = redis_client.xrange(decisions_key(settings.audit_prefix))
    kept = [orjson.loads(values[b"d"]) for _, values in entries]
    assert all("features" not in d and base64.b64decode(d[PACKED]) in raws for d in kept)

    expected = {ids[0]: frame.loc["C-1"].to_dict(), ids[1]: frame.loc["C-2"].to_dict()}
    for request_id, record in expected.items():  # GET /v1/decisions, POST /v1/events
        found = read_decision(redis_client, settings, request_id)
        assert found is not None and found["features"] == record and PACKED not in found
    as_stored = read_decision(redis_client, settings, ids[0], features=False)  # events
    assert as_stored is not None and "features" not in as_stored and PACKED in as_stored
    exported = {
        d["request_id"]: d["features"] for d in read_decisions(redis_client, settings.audit_prefix)
    }
    assert exported == expected  # nbo audit export / why, the outcomes report
    page = read_page(redis_client, settings, CUSTOMER, 1)  # the console's timeline
    assert {d["request_id"]: d["features"] for d in page.decisions} == expected
    replayed = recent_decisions(redis_client, settings.audit_prefix, 5)  # nbo registry replay
    assert {d["request_id"]: d["features"] for d in replayed} == expected


def test_a_schema_is_sent_once_per_writer_within_the_resend_interval(
    settings: Settings, redis_client: redis.Redis
) -> None:
    schema, raws, _ = compact(segment=f"s-{uuid.uuid4().hex}")
    writer = AuditWriter(redis_client, settings)
    writer.submit("a" * 32, decision("a" * 32, raws[0]), schema)
    assert writer.flush(timeout=5)
    key = audit_schema_key(settings.audit_prefix, schema.id)
    redis_client.delete(key)  # proves the next batch does not carry the schema again
    writer.submit("b" * 32, decision("b" * 32, raws[1]), schema)
    assert writer.flush(timeout=5)
    assert redis_client.exists(key) == 0
    other = AuditWriter(redis_client, settings)  # another process's writer sends it again
    other.submit("c" * 32, decision("c" * 32, raws[1]), schema)
    assert other.flush(timeout=5)
    assert redis_client.exists(key) == 1


def test_a_writer_sends_the_schema_again_after_the_resend_interval(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that lost the schema key (flushed, restarted without persistence) gets it
    back, and the decisions written meanwhile read whole again."""
    schema, raws, frame = compact(segment=f"s-{uuid.uuid4().hex}")
    writer = AuditWriter(redis_client, settings)
    writer.submit("f" * 32, decision("f" * 32, raws[0]), schema)
    assert writer.flush(timeout=5)
    key = audit_schema_key(settings.audit_prefix, schema.id)
    redis_client.delete(key)
    monkeypatch.setattr(audit_writer, "SCHEMA_RESEND_SECONDS", 0.0)
    writer.submit("0" * 32, decision("0" * 32, raws[1]), schema)
    assert writer.flush(timeout=5)
    assert redis_client.exists(key) == 1
    earlier = read_decision(redis_client, settings, "f" * 32)
    assert earlier is not None and earlier["features"] == frame.loc["C-1"].to_dict()


def test_a_record_whose_schema_is_missing_reads_as_no_features_with_the_reason(
    settings: Settings, redis_client: redis.Redis
) -> None:
    schema, raws, _ = compact(segment=f"s-{uuid.uuid4().hex}")
    writer = AuditWriter(redis_client, settings)
    writer.submit("d" * 32, decision("d" * 32, raws[0]))  # no schema given: none written
    writer.submit("e" * 32, {**decision("e" * 32, raws[0]), PACKED: "not base64!"})
    assert writer.flush(timeout=5)
    missing = read_decision(redis_client, settings, "d" * 32)
    assert missing is not None and missing["features"] is None
    assert missing[UNREADABLE] == f"record schema {schema.id} not found"
    garbled = read_decision(redis_client, settings, "e" * 32)
    assert garbled is not None and (garbled["features"], garbled[UNREADABLE]) == (
        None,
        "not base64",
    )


def test_only_records_from_which_nothing_identifying_would_be_dropped_are_packed() -> None:
    schema, raws, _ = compact()
    assert packable(raws[0], schema, "C-1")
    named, named_raws, _ = compact(name="Jane Doe")  # an identifying field in the schema
    assert not packable(named_raws[0], named, "C-1")
    holding, holding_raws, _ = compact(segment="C-1")  # the raw id is a value of a table
    assert not packable(holding_raws[0], holding, "C-1")
    assert not packable(holding_raws[0], holding, 'C"1')  # JSON would escape it
    assert not packable(raws[0] + b"C-9", schema, "C-9")  # in the bytes (a JSON field)


@pytest.mark.parametrize("identifier", ["C-1", "customer 7"])
def test_packing_keeps_the_record_the_decision_read(identifier: str) -> None:
    schema, raws, frame = compact()
    assert packable(raws[1], schema, identifier)
    assert schema.codec.decode(raws[1]) == frame.loc["C-2"].to_dict()
