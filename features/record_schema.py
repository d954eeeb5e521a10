"""The schema of compact binary feature records: how each feature of a set is stored.

A :class:`RecordSchema` is derived from a feature frame (``features.pointintime``) and
stored ONCE in the feature set's metadata; every record starts with a header naming the
schema it was written with (``features/record_codec.py`` encodes and decodes the records).

A *coded* field stores an index into its lookup table, code 0 being null: booleans
(``[null, false, true]``), texts and dates (the version's distinct values, dates as ISO
text), and integers (``range``: every value from the column's minimum to its maximum).
Floats keep their exact value (float32 only where it is lossless): the models' tree cuts
and the eligibility thresholds read float64, and a served record must equal the one
training and batch scoring saw. Non-finite floats are null, as in the JSON records.
Lists of texts (``list``) store one code per item; anything else is stored as JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
import pandas as pd

if TYPE_CHECKING:
    from features.record_codec import RecordCodec

FORMAT = 2
"""The first byte of every compact record (a JSON record starts with ``{``). Format 1 (an
earlier block order, never released) is refused: its sets must be materialized again."""
MAX_LIST_ITEMS = 254

Kind = Literal["coded", "range", "float32", "float64", "int64", "list", "json"]


@dataclass(frozen=True)
class FieldSpec:
    """How one feature is stored.

    ``coded``: ``values`` is the lookup table (code ``i + 1`` is ``values[i]``; 0 is null).
    ``range``: integers ``low..high`` coded as ``value - low + 1`` (0 is null).
    ``list``: a list of texts, each a code into ``values`` (0-based). ``json``: orjson bytes.
    """

    name: str
    kind: Kind
    values: tuple[Any, ...] = ()
    low: int = 0
    high: int = -1

    @property
    def codes(self) -> int:
        """How many codes a coded or range field uses (null included)."""
        if self.kind == "range":
            return self.high - self.low + 2
        return len(self.values) + 1

    @property
    def block(self) -> str:
        if self.kind in ("coded", "range"):
            return f"{self.kind}{8 if self.codes <= 256 else 16}"
        if self.kind in ("list", "json"):
            return "tail"
        return self.kind

    def lookup(self) -> list[Any]:
        """The decoded value of each code of a coded or range field."""
        if self.kind == "range":
            return [None, *range(self.low, self.high + 1)]
        return [None, *self.values]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("coded", "list"):
            out["values"] = list(self.values)
        if self.kind == "range":
            out["low"], out["high"] = self.low, self.high
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FieldSpec:
        kind = data["kind"]
        if kind not in ("coded", "range", "float32", "float64", "int64", "list", "json"):
            raise ValueError(f"feature record schema: field {data.get('name')!r} has kind {kind!r}")
        return cls(
            name=str(data["name"]),
            kind=kind,
            values=tuple(data.get("values", ())),
            low=int(data.get("low", 0)),
            high=int(data.get("high", -1)),
        )


@dataclass(frozen=True)
class RecordSchema:
    """The fields of a feature set's records, in the frame's column order."""

    fields: tuple[FieldSpec, ...]
    format: int = FORMAT

    @cached_property
    def id(self) -> str:
        """8 hex digits of a SHA-256 of the schema: the record header's schema id."""
        canonical = orjson.dumps(
            {"format": self.format, "fields": [f.to_json() for f in self.fields]}
        )
        return hashlib.sha256(canonical).hexdigest()[:8]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "id": self.id, "fields": [f.to_json() for f in self.fields]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordSchema:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"feature record schema has format {data.get('format')!r}, this release reads "
                f"{FORMAT}: materialize the feature set again"
            )
        schema = cls(tuple(FieldSpec.from_json(f) for f in data["fields"]))
        if data.get("id") not in (None, schema.id):
            raise ValueError(f"feature record schema {data.get('id')!r} does not match its fields")
        return schema

    @cached_property
    def codec(self) -> RecordCodec:
        """The schema compiled for encoding and decoding (``features/record_codec.py``)."""
        from features.record_codec import RecordCodec

        return RecordCodec(self)

    def __getstate__(self) -> dict[str, Any]:
        """The fields only: the id and the compiled codec are derived again when used."""
        return {"fields": self.fields, "format": self.format}


# --- deriving a schema from a frame ------------------------------------------------------


def derive_schema(frame: pd.DataFrame) -> RecordSchema:
    """The smallest schema that holds every value of ``frame`` exactly."""
    return RecordSchema(tuple(_derive_field(str(name), frame[name]) for name in frame.columns))


def _derive_field(name: str, column: pd.Series) -> FieldSpec:
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return FieldSpec(name, "coded", (False, True))
    if pd.api.types.is_integer_dtype(dtype):
        values = column.dropna().to_numpy(dtype=np.int64)
        if len(values) == 0:
            return FieldSpec(name, "range", low=0, high=0)
        low, high = int(values.min()), int(values.max())
        if high - low + 2 <= 65536:
            return FieldSpec(name, "range", low=low, high=high)
        return FieldSpec(name, "int64")
    if pd.api.types.is_float_dtype(dtype):
        values = finite_floats(column)
        exact = np.array_equal(values.astype(np.float32).astype(np.float64), values, equal_nan=True)
        return FieldSpec(name, "float32" if exact else "float64")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _coded_or_json(name, date_texts(column))
    return _derive_object(name, column)


def _derive_object(name: str, column: pd.Series) -> FieldSpec:
    present = column[column.notna()]
    kinds = set(present.map(type).unique()) if len(present) else {str}
    if kinds <= {str}:
        return _coded_or_json(name, column)
    if kinds <= {tuple, list}:
        try:
            uniques = pd.unique(present.map(tuple))
        except TypeError:  # lists of objects (e.g. maturities): stored as JSON
            return FieldSpec(name, "json")
        items = sorted({item for value in uniques for item in value}, key=str)
        fits = all(isinstance(i, str) for i in items) and len(items) <= 65536
        if fits and max((len(v) for v in uniques), default=0) <= MAX_LIST_ITEMS:
            return FieldSpec(name, "list", tuple(items))
    return FieldSpec(name, "json")


def _coded_or_json(name: str, texts: pd.Series) -> FieldSpec:
    uniques = sorted(pd.unique(texts.dropna()).tolist())
    if len(uniques) + 1 <= 65536:
        return FieldSpec(name, "coded", tuple(uniques))
    return FieldSpec(name, "json")


def finite_floats(column: pd.Series) -> np.ndarray:
    """The column as float64, NaN for null and for the non-finite (both stored as null)."""
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def date_texts(column: pd.Series) -> pd.Series:
    """ISO dates as text (null stays null), formatting each distinct date once."""
    codes, uniques = pd.factorize(column)
    texts = np.empty(len(uniques) + 1, dtype=object)  # code -1 (null) picks the last entry
    texts[:-1] = pd.DatetimeIndex(uniques).strftime("%Y-%m-%d")
    return pd.Series(texts[codes], index=column.index, dtype=object)


def join_schemas(old: RecordSchema, new: RecordSchema) -> RecordSchema:
    """A schema (of ``old``'s fields) that stores every value either schema stores: tables
    joined, ranges widened, float32 -> float64, and JSON where nothing narrower holds both."""
    return RecordSchema(tuple(map(_join, old.fields, new.fields)))


def _join(old: FieldSpec, new: FieldSpec) -> FieldSpec:
    """A field that stores every value either field stores."""
    kinds = {old.kind, new.kind}
    if len(kinds) == 1 and old.kind in ("float32", "float64", "int64", "json"):
        return old
    if kinds == {"float32", "float64"}:
        return FieldSpec(old.name, "float64")
    if kinds == {"range"}:
        low, high = min(old.low, new.low), max(old.high, new.high)
        if high - low + 2 <= 65536:
            return FieldSpec(old.name, "range", low=low, high=high)
        return FieldSpec(old.name, "int64")
    if kinds <= {"range", "int64"}:
        return FieldSpec(old.name, "int64")
    if len(kinds) == 1 and old.kind in ("coded", "list"):
        values = tuple(sorted({*old.values, *new.values}, key=_sort_key))
        if old.kind == "list" or len(values) + 1 <= 65536:
            return FieldSpec(old.name, old.kind, values)
    return FieldSpec(old.name, "json")  # holds any value exactly


def _sort_key(value: Any) -> tuple[str, str]:
    return (type(value).__name__, str(value))
