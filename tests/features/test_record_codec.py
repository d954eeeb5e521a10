"""Compact binary feature records: every feature type round-trips to its JSON form, a record
of another schema or a malformed one is refused, and the schema survives the set's meta."""

from __future__ import annotations

import copy
import pickle
from datetime import date

import numpy as np
import orjson
import pandas as pd
import pytest

from core.catalogue import Catalogue
from features.online_store import FeatureSetInfo
from features.pointintime import compute_features, to_records
from features.record_codec import (
    HEADER_BYTES,
    RecordDecodeError,
    SchemaMismatchError,
    encode_frame,
    schema_for,
)
from features.record_schema import RecordSchema, derive_schema
from tests.support.tables import synthetic_tables

AS_OF = date(2025, 6, 30)
MATURITY = {"product": "funds", "amount": 1.5, "maturity_date": "2025-07-01"}


def every_type() -> pd.DataFrame:
    """One column per way a feature is stored, with nulls, NaN and infinities."""
    ids = pd.Index([f"C{n}" for n in range(6)], name="customer_id")
    frame = pd.DataFrame(
        {
            "ratio": [0.1, np.nan, -2.5e-7, np.inf, -np.inf, 1 / 3],
            "money": [1234.5, 0.0, -7.25, np.nan, 2.0**40, 2.0**-20],  # float32 holds these
            "small": pd.array([0, 12, None, 3, -4, 12], dtype="Int64"),
            "wide": pd.array([0, 1, 60_000, None, 2, 3], dtype="Int64"),  # needs uint16
            "huge": pd.array([-(2**40), 2**40, None, 0, 1, 5], dtype="Int64"),  # int64
            "unknown": pd.array([None] * 6, dtype="Int64"),
            "flag": pd.array([True, False, None, True, True, False], dtype="boolean"),
            "tier": pd.Series(
                ["mass", None, "private", "mass", "affluent", "mass"], dtype=object, index=ids
            ),
            "day": pd.to_datetime(["2025-01-31", "NaT", "2024-12-01", "2025-01-31", "NaT", "NaT"]),
            "held": pd.Series(
                [("funds", "loans"), (), None, ("loans",), ("funds",), ("loans", "funds")],
                dtype=object,
                index=ids,
            ),
            "maturities": pd.Series(
                [[], [MATURITY], [], None, [], []],
                dtype=object,
                index=ids,
            ),
            "note": pd.Series([f"t{n}" for n in range(6)], dtype=object, index=ids),
        },
        index=ids,
    )
    return frame


def json_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """What the JSON records of today hold: the reference every decode must equal."""
    return [orjson.loads(orjson.dumps(record)) for _, record in to_records(frame)]


def assert_round_trip(frame: pd.DataFrame, schema: RecordSchema) -> None:
    raws = encode_frame(schema, frame)
    for raw, expected in zip(raws, json_records(frame), strict=True):
        decoded = schema.codec.decode(raw)
        assert decoded == expected
        assert list(decoded) == list(expected)  # keys in the frame's column order
        assert [type(v) for v in decoded.values()] == [type(v) for v in expected.values()]


def test_every_feature_type_round_trips_to_its_json_form() -> None:
    frame = every_type()
    schema = derive_schema(frame)
    kinds = {spec.name: spec.kind for spec in schema.fields}
    assert kinds == {
        "ratio": "float64",
        "money": "float32",
        "small": "range",
        "wide": "range",
        "huge": "int64",
        "unknown": "range",
        "flag": "coded",
        "tier": "coded",
        "day": "coded",
        "held": "list",
        "maturities": "json",
        "note": "coded",
    }
    assert schema.codec.blocks["range16"] == [s for s in schema.fields if s.name == "wide"]
    assert_round_trip(frame, schema)
    decoded = schema.codec.decode(encode_frame(schema, frame)[3])
    assert decoded["ratio"] is None  # infinity, like NaN, is null as in the JSON records
    assert decoded["held"] == ["loans"] and decoded["maturities"] is None
    assert decoded["day"] == "2025-01-31" and decoded["flag"] is True


def test_texts_beyond_a_16_bit_table_are_stored_as_json() -> None:
    ids = pd.Index([f"C{n}" for n in range(70_000)], name="customer_id")
    frame = pd.DataFrame({"note": pd.Series([f"t{n}" for n in range(70_000)], index=ids)})
    schema = derive_schema(frame)
    assert schema.fields[0].kind == "json"
    raws = encode_frame(schema, frame.iloc[[0, 69_999]])
    assert [schema.codec.decode(r) for r in raws] == [{"note": "t0"}, {"note": "t69999"}]


def test_a_real_feature_set_round_trips_and_is_compact(catalogue: Catalogue) -> None:
    tables = synthetic_tables([p.id for p in catalogue.holdable], customers=300, months=6, seed=5)
    frame = compute_features(tables, AS_OF, catalogue)
    schema = derive_schema(frame)
    assert_round_trip(frame, schema)
    sizes = [len(raw) for raw in encode_frame(schema, frame)]
    # One byte for most of the 229 features; the JSON record is ~6.6 KB.
    assert max(sizes) < 700 and np.mean(sizes) < 400


def test_a_record_of_another_schema_is_refused() -> None:
    frame = every_type()
    old = derive_schema(frame)
    changed = frame.assign(tier=frame["tier"].replace("private", "wealth"))
    new = derive_schema(changed)
    assert new.id != old.id
    raw = encode_frame(old, frame)[0]
    with pytest.raises(SchemaMismatchError):
        new.codec.decode(raw)
    with pytest.raises(SchemaMismatchError):  # a JSON record is not a compact one
        new.codec.decode(orjson.dumps(json_records(frame)[0]))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[:-1], id="truncated"),
        pytest.param(lambda raw: raw + b"\x00", id="trailing-byte"),
        pytest.param(lambda raw: raw[:20], id="cut-in-fixed-part"),
        pytest.param(
            lambda raw: raw[:HEADER_BYTES] + b"\xfe" + raw[HEADER_BYTES + 1 :], id="bad-code"
        ),
    ],
)
def test_a_malformed_record_is_refused_never_decoded(damage) -> None:  # type: ignore[no-untyped-def]
    frame = every_type()
    schema = derive_schema(frame)
    raw = encode_frame(schema, frame)[1]
    with pytest.raises(RecordDecodeError):
        schema.codec.decode(damage(raw))


def test_the_schema_survives_the_feature_set_meta() -> None:
    frame = every_type()
    schema = derive_schema(frame)
    assert RecordSchema.from_json(orjson.loads(orjson.dumps(schema.to_json()))) == schema
    info = FeatureSetInfo(
        version="v1",
        as_of=AS_OF,
        created_at=pd.Timestamp("2025-07-01", tz="UTC").to_pydatetime(),
        customers=len(frame),
        feature_names=list(frame.columns),
        catalogue_version="test",
        record_schemas=(schema,),
    )
    again = FeatureSetInfo.from_json(info.to_json())
    assert again == info
    raw = encode_frame(schema, frame)[4]
    assert again.decode(raw) == json_records(frame)[4]
    tampered = {**schema.to_json(), "id": "00000000"}
    with pytest.raises(ValueError, match="does not match its fields"):
        RecordSchema.from_json(tampered)


def test_a_partition_reuses_the_schema_its_values_fit() -> None:
    frame = every_type()
    first = derive_schema(frame)
    assert schema_for(frame.iloc[:3], first) is first
    other = frame.assign(small=pd.array([200] * 6, dtype="Int64"))  # outside -4..12
    second = schema_for(other, first)
    assert second is not first and second.id != first.id
    assert_round_trip(other, second)


def test_encoding_leaves_the_frame_as_it_was() -> None:
    """Plain numpy integer columns too (their codes are computed in place on a copy)."""
    frame = every_type().assign(plain=np.arange(6, dtype=np.int64) + 40)
    before = frame.copy()
    schema = derive_schema(frame)
    assert_round_trip(frame, schema)
    pd.testing.assert_frame_equal(frame, before)


def test_a_partition_that_does_not_fit_gets_a_schema_for_both() -> None:
    """Tables joined and ranges widened: the earlier partition's values fit the new schema
    too, so the schemas of a set's partitions converge."""
    frame = every_type()
    first = derive_schema(frame)
    other = frame.assign(
        tier=frame["tier"].replace("affluent", "wealth"),
        small=pd.array([200, None, 0, 1, 2, 3], dtype="Int64"),
        ratio=frame["ratio"].astype(np.float64),
        money=frame["money"] + 0.1,  # no longer float32-exact
    )
    joined = schema_for(other, first)
    specs = {spec.name: spec for spec in joined.fields}
    assert specs["tier"].values == ("affluent", "mass", "private", "wealth")
    assert (specs["small"].low, specs["small"].high) == (-4, 200)
    assert specs["money"].kind == "float64"
    assert_round_trip(other, joined)
    assert_round_trip(frame, joined)
    assert schema_for(frame, joined) is joined


def test_dates_beyond_a_16_bit_table_are_stored_as_iso_text() -> None:
    days = pd.date_range("1850-01-01", periods=70_000, freq="D")
    ids = pd.Index([f"C{n}" for n in range(len(days))], name="customer_id")
    frame = pd.DataFrame({"day": days}, index=ids)
    schema = derive_schema(frame)
    assert schema.fields[0].kind == "json"
    raws = encode_frame(schema, frame.iloc[[0, -1]])
    last = f"{days[-1]:%Y-%m-%d}"
    assert [schema.codec.decode(r) for r in raws] == [{"day": "1850-01-01"}, {"day": last}]


def test_a_feature_set_with_its_compiled_schema_pickles() -> None:
    """Feature sets and schemas travel to worker processes (multiprocessing, Spark)."""
    frame = every_type()
    schema = derive_schema(frame)
    info = FeatureSetInfo(
        version="v1",
        as_of=AS_OF,
        created_at=pd.Timestamp("2025-07-01", tz="UTC").to_pydatetime(),
        customers=len(frame),
        feature_names=list(frame.columns),
        catalogue_version="test",
        record_schemas=(schema,),
    )
    raw = encode_frame(schema, frame)[1]
    decoded = info.decode(raw)  # compiles the schema
    again = pickle.loads(pickle.dumps(info))
    assert again == info and again.decode(raw) == decoded
    assert copy.deepcopy(info).decode(raw) == decoded
