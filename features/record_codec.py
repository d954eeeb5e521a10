"""Compact binary feature records, a few hundred bytes a customer: encoding and decoding.

A record is written with the :class:`RecordSchema` of its feature
set (``features/record_schema.py``: the fields and how each is stored); every record starts
with a header naming the schema it was written with, so a record is never decoded with
another schema.

Record layout (little-endian), from a schema's fields grouped by how they are stored::

    header   1 byte format (0x02) + 4 bytes schema id (first bytes of a SHA-256 of the schema)
    ranges   uint8 per integer field with at most 255 values (low..high), then uint16 per
             wider one: the value minus low plus 1, 0 for null
    coded    uint8 per other coded field with at most 255 values, then uint16: an index
             into the field's table plus 1, 0 for null
    floats   float32 per float field that float32 holds exactly, then float64 per other one
    ints     int64 per integer field too wide to code (INT64_MIN: null)
    tail     per ``list`` field: uint8 count (255: null) then one code per item (uint8 or
             uint16); per ``json`` field: uint32 length then the orjson bytes

Decoding (:meth:`RecordCodec.decode`) is one ``struct.unpack_from`` of the fixed-width
part and one pass per kind of field (the same step for each field of that kind, no
branching on the field), then one ``update`` of a template dict in the frame's column
order; only the variable-length tail is walked field by field. The result equals the JSON
record of ``features.pointintime.to_records``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from operator import getitem, le
from typing import Any

import numpy as np
import orjson
import pandas as pd

from features.record_schema import (
    FORMAT,
    MAX_LIST_ITEMS,
    FieldSpec,
    Kind,
    RecordSchema,
    date_texts,
    derive_schema,
    finite_floats,
    join_schemas,
)

__all__ = [
    "FORMAT",
    "HEADER_BYTES",
    "INT64_NULL",
    "MAX_LIST_ITEMS",
    "NULL_COUNT",
    "DoesNotFitError",
    "FieldSpec",
    "Kind",
    "RecordCodec",
    "RecordDecodeError",
    "RecordSchema",
    "SchemaMismatchError",
    "derive_schema",
    "encode_chunks",
    "encode_frame",
    "schema_for",
]

HEADER_BYTES = 5
NULL_COUNT = 255
"""The count byte of a null list."""
INT64_NULL = np.iinfo(np.int64).min

_BLOCKS: tuple[str, ...] = (
    "range8",
    "range16",
    "coded8",
    "coded16",
    "float32",
    "float64",
    "int64",
    "tail",
)


class RecordDecodeError(ValueError):
    """A record that cannot be decoded with the feature set's schema (never decoded wrongly)."""


class SchemaMismatchError(RecordDecodeError):
    """The record was written with a schema that is not the feature set's."""


# --- encoding a frame ------------------------------------------------------------------


class DoesNotFitError(ValueError):
    """A value of the frame has no code in the schema (derive a new schema)."""


def encode_frame(schema: RecordSchema, frame: pd.DataFrame) -> list[bytes]:
    """Every row of ``frame`` as a record of ``schema``, column by column.

    Raises :class:`DoesNotFitError` when a value cannot be stored with ``schema`` (a text
    or integer outside its tables), and ``ValueError`` when the frame's columns are not the
    schema's.
    """
    if [str(c) for c in frame.columns] != schema.names:
        raise ValueError("the frame's columns are not the feature record schema's fields")
    codec = schema.codec
    rows = len(frame)
    parts: list[np.ndarray] = [
        np.broadcast_to(np.frombuffer(codec.header, np.uint8), (rows, HEADER_BYTES))
    ]
    for block, dtype in _FIXED_BLOCKS:
        specs = codec.blocks[block]
        if specs:
            # Field by field into a (field, row) array, then one transpose to rows.
            by_field = np.empty((len(specs), rows), dtype=dtype)
            for n, spec in enumerate(specs):
                by_field[n] = _fixed_values(spec, frame[spec.name])
            parts.append(np.ascontiguousarray(by_field.T).view(np.uint8))
    fixed = np.ascontiguousarray(np.concatenate(parts, axis=1)).tobytes()
    width = codec.fixed_bytes
    heads = [fixed[i : i + width] for i in range(0, rows * width, width)]
    tails = [_tail(spec, frame[spec.name]) for spec in codec.blocks["tail"]]
    if not tails:
        return heads
    return [b"".join(parts_of_row) for parts_of_row in zip(heads, *tails, strict=True)]


_FIXED_BLOCKS = (
    ("range8", "<u1"),
    ("range16", "<u2"),
    ("coded8", "<u1"),
    ("coded16", "<u2"),
    ("float32", "<f4"),
    ("float64", "<f8"),
    ("int64", "<i8"),
)


def _fixed_values(spec: FieldSpec, column: pd.Series) -> np.ndarray:
    """One fixed-width field's column as stored: codes, floats (NaN: null) or int64."""
    if spec.kind in ("coded", "range"):
        return _codes(spec, column)
    if spec.kind == "int64":
        return column.to_numpy(dtype=np.int64, na_value=INT64_NULL)
    return finite_floats(column)


def _masked(column: pd.Series, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """``(int64 values with nulls as fill, null mask)`` of an integer or boolean column.

    Reads a nullable column's own data and mask (no copy through objects): this runs for
    some 200 columns of every chunk.
    """
    if isinstance(column.array, pd.arrays.IntegerArray | pd.arrays.BooleanArray):
        array: Any = column.array
        values = np.where(array._mask, fill, array._data).astype(np.int64, copy=False)
        return values, np.asarray(array._mask)
    missing = column.isna().to_numpy()
    return np.array(column.to_numpy(dtype=np.int64, na_value=fill)), missing  # a copy


def _codes(spec: FieldSpec, column: pd.Series) -> np.ndarray:
    """The code of every value of a coded or range field (0 for null)."""
    if spec.kind == "range":
        values, missing = _masked(column, spec.low)  # nulls as low: in range
        if len(values) and (values.min() < spec.low or values.max() > spec.high):
            raise DoesNotFitError(f"feature {spec.name}: a value outside {spec.low}..{spec.high}")
        codes = np.subtract(values, spec.low - 1, out=values)
    elif spec.values == (False, True) and pd.api.types.is_bool_dtype(column.dtype):
        values, missing = _masked(column, 0)
        codes = values + 1
    else:
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            column = date_texts(column)
        # Each distinct value looked up in the table once (a handful per column).
        found, uniques = pd.factorize(column, use_na_sentinel=True)
        table = pd.Index(list(spec.values), dtype=object)
        positions = table.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
        if (positions < 0).any():
            raise DoesNotFitError(f"feature {spec.name}: a value outside its table")
        lookup = np.append(positions.astype(np.int64) + 1, 0)  # code -1 (null) -> 0
        return lookup[found]
    codes[missing] = 0
    return codes


def _tail(spec: FieldSpec, column: pd.Series) -> list[bytes]:
    """The tail bytes of one list or json field, per row (each distinct list encoded once)."""
    if spec.kind == "json":
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            column = date_texts(column)
        values = column.to_numpy(dtype=object)
        # Each distinct object encoded once: most customers' maturities are one shared
        # empty list (``features.contract_features.maturities``).
        codes, _ = pd.factorize(np.fromiter(map(id, values), np.int64, len(values)))
        first_row = np.unique(codes, return_index=True)[1]  # codes number first appearances
        pack = _U32.pack
        table = np.empty(len(first_row), dtype=object)
        for code, row in enumerate(first_row.tolist()):
            dumped = orjson.dumps(values[row])
            table[code] = pack(len(dumped)) + dumped
        return list(table[codes])
    wide = len(spec.values) > 256
    position = {item: n for n, item in enumerate(spec.values)}
    uniques: Any
    try:  # the lists of a feature frame are shared tuples: factorized as they are
        codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    except TypeError:  # lists
        keys = column.map(lambda v: None if v is None else tuple(v), na_action="ignore")
        codes, uniques = pd.factorize(keys, use_na_sentinel=True)
    encoded: list[bytes] = []
    for items in uniques:
        try:
            codes_of = np.array([position[item] for item in items], dtype="<u2" if wide else "<u1")
        except KeyError as exc:
            raise DoesNotFitError(f"feature {spec.name}: an item outside its table") from exc
        if len(items) > MAX_LIST_ITEMS:
            raise DoesNotFitError(f"feature {spec.name}: a list of {len(items)} items")
        encoded.append(bytes([len(items)]) + codes_of.tobytes())
    encoded.append(bytes([NULL_COUNT]))  # code -1 (null) picks the last entry
    table = np.array(encoded, dtype=object)
    return list(table[codes])


def schema_for(frame: pd.DataFrame, schema: RecordSchema | None = None) -> RecordSchema:
    """``schema`` when every value of ``frame`` fits it, else a schema for both.

    ``schema``: e.g. the one an earlier partition of the same feature set was written
    with. When ``frame`` does not fit it, the new schema holds the values of both (tables
    joined, ranges widened), so a set's partitions converge on one schema after a few.
    """
    if schema is None or schema.names != [str(c) for c in frame.columns]:
        return derive_schema(frame)
    try:
        for spec in schema.fields:
            if spec.kind in ("coded", "range"):
                _codes(spec, frame[spec.name])
            elif spec.kind == "list":
                _tail(spec, frame[spec.name])
        return schema
    except DoesNotFitError:
        return join_schemas(schema, derive_schema(frame))


def encode_chunks(
    schema: RecordSchema, frame: pd.DataFrame, rows: int
) -> Iterator[tuple[pd.Index, list[bytes]]]:
    """``(customer ids, records)`` of ``frame``, ``rows`` customers at a time."""
    for start in range(0, len(frame), rows):
        chunk = frame.iloc[start : start + rows]
        yield chunk.index, encode_frame(schema, chunk)


# --- decoding one record -----------------------------------------------------------------


class RecordCodec:
    """A schema compiled for decoding: one ``struct`` for the whole fixed-width part, the
    offset of each range field, the table of each coded field, and a template dict with
    the keys in the frame's column order."""

    def __init__(self, schema: RecordSchema) -> None:
        self.schema = schema
        self.header = bytes([schema.format]) + bytes.fromhex(schema.id)
        self.blocks: dict[str, list[FieldSpec]] = {b: [] for b in _BLOCKS}
        for spec in schema.fields:
            self.blocks[spec.block].append(spec)
        n = {block: len(specs) for block, specs in self.blocks.items()}
        self.fixed = struct.Struct(
            f"<{HEADER_BYTES}x{n['range8']}B{n['range16']}H{n['coded8']}B{n['coded16']}H"
            f"{n['float32']}f{n['float64']}d{n['int64']}q"
        )
        self.fixed_bytes = self.fixed.size
        ranges = self.blocks["range8"] + self.blocks["range16"]
        coded = self.blocks["coded8"] + self.blocks["coded16"]
        self.offsets = [spec.low - 1 for spec in ranges]  # value = code + offset (0: null)
        self.range_limits = [spec.codes - 1 for spec in ranges]  # the highest code
        self.tables = [tuple(spec.lookup()) for spec in coded]
        self.end_ranges = len(ranges)
        self.end_coded = self.end_ranges + len(coded)
        self.end_floats = self.end_coded + n["float32"] + n["float64"]
        self.n_ints = n["int64"]
        self.tail = [
            (spec.kind == "json", tuple(spec.values), len(spec.values) > 256)
            for spec in self.blocks["tail"]
        ]
        self.layout = tuple(spec.name for block in _BLOCKS for spec in self.blocks[block])
        self.template: dict[str, Any] = dict.fromkeys(schema.names)

    def __reduce__(self) -> tuple[type[RecordCodec], tuple[RecordSchema]]:
        """Pickled as its schema, compiled again when unpickled (a ``Struct`` cannot be
        pickled; feature sets and schemas go to worker processes)."""
        return (RecordCodec, (self.schema,))

    def decode(self, raw: bytes) -> dict[str, Any]:
        """The record as a dict equal to its JSON form, keys in the frame's column order.

        One ``unpack_from`` reads every fixed-width field; then one pass per kind, the same
        step for every field of it: range codes plus their offset (code 0: null), coded
        fields through their table, NaN floats to null; one ``update`` fills a copy of the
        template dict. A code past its field's range or table is refused, never decoded to
        another value. Plain ``struct`` and list work, no numpy: on the request path the
        caches are cold, and numpy's per-call machinery cost more than the whole decode.

        Raises :class:`SchemaMismatchError` when ``raw`` was written with another schema
        (or is not a compact record), :class:`RecordDecodeError` when it is malformed.
        """
        if raw[:HEADER_BYTES] != self.header:
            raise SchemaMismatchError("feature record written with another schema")
        try:
            fixed = self.fixed.unpack_from(raw)
        except struct.error as exc:
            raise RecordDecodeError("feature record is shorter than its schema") from exc
        codes = fixed[: self.end_ranges]
        if not all(map(le, codes, self.range_limits)):
            raise RecordDecodeError("feature record holds a code outside its field's range")
        values: list[Any] = [
            c + o if c else None for c, o in zip(codes, self.offsets, strict=False)
        ]
        try:
            values += map(getitem, self.tables, fixed[self.end_ranges : self.end_coded])
        except IndexError as exc:
            raise RecordDecodeError("feature record holds a code outside its table") from exc
        values += [v if v == v else None for v in fixed[self.end_coded : self.end_floats]]
        if self.n_ints:
            values += [None if v == INT64_NULL else v for v in fixed[self.end_floats :]]
        if self.tail:
            values += self._decode_tail(raw)
        elif len(raw) != self.fixed_bytes:
            raise RecordDecodeError("feature record is longer than its schema")
        record = self.template.copy()
        # As many values as fields by construction (the schema fixes every count).
        record.update(zip(self.layout, values, strict=False))
        return record

    def _decode_tail(self, raw: bytes) -> list[Any]:
        at = self.fixed_bytes
        out: list[Any] = []
        try:
            for is_json, items, wide in self.tail:
                if is_json:
                    (size,) = _U32.unpack_from(raw, at)
                    out.append(orjson.loads(raw[at + 4 : at + 4 + size]))
                    at += 4 + size
                    continue
                count = raw[at]
                at += 1
                if count == NULL_COUNT:
                    out.append(None)
                    continue
                end = at + count * (2 if wide else 1)
                if end > len(raw):
                    raise RecordDecodeError("feature record tail is truncated")
                codes = struct.unpack_from(f"<{count}H", raw, at) if wide else raw[at:end]
                out.append([items[c] for c in codes])
                at = end
        except (struct.error, IndexError, orjson.JSONDecodeError) as exc:
            raise RecordDecodeError(f"feature record tail is malformed ({exc})") from exc
        if at != len(raw):
            raise RecordDecodeError("feature record is longer than its schema")
        return out


_U32 = struct.Struct("<I")
