"""Read and check a Santander ``train_ver2.csv``-format file: its structure and every column.

The file is read as text (``dtype=str``, no NA guessing) in chunks and every column is
parsed here, vectorised, because the raw file mixes padded numbers (``" 35"``), ``NA``,
empty strings and floats (``1.0``) in the same column. ``sexo``: ``H`` -> ``"F"``, ``V`` ->
``"M"`` (why: ``features/santander.py``, which turns the parsed rows into the canonical
tables).

Rows that cannot be used are rejected with a reason and counted; cells that can be read
with a safe default (a missing product flag -> not held) are counted as warnings. A file
whose *structure* is wrong (missing or unknown columns, a row with the wrong number of
fields) raises :class:`~features.errors.DataFormatError` naming the line.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from core.catalogue import Catalogue
from features.errors import DataFormatError

MAX_AGE = 120
REQUIRED_COLUMNS = (
    "fecha_dato",
    "ncodpers",
    "ind_empleado",
    "sexo",
    "age",
    "fecha_alta",
    "indresi",
    "nomprov",
    "ind_actividad_cliente",
    "renta",
    "segmento",
)
PRODUCT_COLUMN = re.compile(r"^ind_[a-z_]+_ult1$")
MISSING_TEXT = ("", "NA")
SEX = {"H": "F", "V": "M"}
COMPRESSION: dict[str, Literal["gzip", "bz2", "xz"]] = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}


@dataclass
class ParsedChunk:
    """Accepted rows of one chunk: keys and holdings for every row, profile columns too."""

    keys: pd.DataFrame  # cust (int64), month, row (int64), active (boolean), product codes
    profile: pd.DataFrame  # cust, month, row, age, sex, joined, segmento, income, ...


@dataclass(frozen=True)
class SantanderCsv:
    """A file whose header passed :func:`open_csv`: its path, fields per row, product columns."""

    path: Path
    fields: int
    codes: list[str]


def open_csv(path: Path, catalogue: Catalogue) -> SantanderCsv:
    """Check the header of ``path`` against the required columns and the catalogue.

    Raises :class:`DataFormatError` for an empty or unreadable file, a missing required
    column or a product column the catalogue does not know.
    """
    header = _read_header(path)
    return SantanderCsv(path, len(header), _product_codes(path, header, catalogue))


def parse_chunks(
    csv_file: SantanderCsv, chunk_rows: int, rejections: Counter[str], warnings: Counter[str]
) -> Iterator[tuple[int, ParsedChunk]]:
    """``(data rows read so far, accepted rows)`` for each chunk of about ``chunk_rows`` rows.

    Rejected rows are counted in ``rejections`` by reason, defaulted cells in ``warnings``;
    a row with the wrong number of fields raises :class:`DataFormatError`. Only one chunk's
    text is held at a time.
    """
    rows_read = 0
    for raw in _chunks(csv_file.path, csv_file.fields, chunk_rows):
        parsed = _parse_chunk(raw, csv_file.codes, rows_read, rejections, warnings)
        rows_read += len(raw)
        del raw
        yield rows_read, parsed
        del parsed


def merge_latest(latest: pd.DataFrame | None, profile: pd.DataFrame) -> pd.DataFrame:
    """The latest profile row per customer of ``latest`` (None: none yet) and ``profile``."""
    return _latest_per_customer(profile if latest is None else pd.concat([latest, profile]))


def no_valid_rows(path: Path, rows_read: int, rejections: Counter[str]) -> DataFormatError:
    """The error for a file of which no row was accepted."""
    what = "no data rows" if rows_read == 0 else f"all {rows_read} rows rejected"
    return DataFormatError(path, 1, None, f"no valid rows: {what} ({dict(rejections)})")


# -- file structure ---------------------------------------------------------------------------


def _compression(path: Path) -> Literal["gzip", "bz2", "xz"] | None:
    return COMPRESSION.get(path.suffix.lower())


def _open_text(path: Path) -> IO[str]:
    kind = _compression(path)
    if kind == "gzip":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    if kind == "bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    if kind == "xz":
        return lzma.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _read_header(path: Path) -> list[str]:
    try:
        header = pd.read_csv(path, nrows=0, dtype=str, compression=_compression(path))
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, 1, None, "empty file: no header line") from None
    except (OSError, EOFError) as exc:
        raise DataFormatError(path, 1, None, f"cannot read file: {exc}") from exc
    return [str(c) for c in header.columns]


def _product_codes(path: Path, header: list[str], catalogue: Catalogue) -> list[str]:
    """Product columns of the file, checked against the required columns and the catalogue."""
    known = catalogue.by_santander_code
    for position, name in enumerate(header, start=1):
        if PRODUCT_COLUMN.match(name) and name not in known:
            raise DataFormatError(
                path, 1, position, f"product column {name!r} is not in the catalogue"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    missing += [code for code in known if code not in header]
    if missing:
        raise DataFormatError(path, 1, None, f"missing required column(s): {', '.join(missing)}")
    return [name for name in header if PRODUCT_COLUMN.match(name)]


def _first_bad_record(path: Path, expected: int) -> tuple[int, int] | None:
    """(physical line, field count) of the first record without ``expected`` fields.

    Only run when pandas reports or hints at a ragged row: it is exact (quoted fields may
    span lines) but pure Python, so it stays off the normal path.
    """
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        start = 1
        for record in reader:
            if record and len(record) != expected:
                return start, len(record)
            start = reader.line_num + 1
    return None


def _ragged_row_error(path: Path, expected: int, fallback: str | None) -> DataFormatError | None:
    found = _first_bad_record(path, expected)
    if found is not None:
        line, count = found
        # The column is where the row stops matching the header: its first missing field,
        # or its first extra one.
        column = count + 1 if count < expected else expected + 1
        return DataFormatError(path, line, column, f"expected {expected} fields, found {count}")
    if fallback is None:
        return None
    match = re.search(r"line (\d+)", fallback)
    return DataFormatError(path, int(match.group(1)) if match else 1, None, fallback)


CSV_BLOCK_BYTES = 8 << 20
"""Bytes the Arrow CSV reader parses at a time (a chunk is a few such blocks)."""


def _open_binary(path: Path) -> IO[bytes]:
    kind = _compression(path)
    if kind == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A binary column as UTF-8 text, invalid bytes replaced (as the file is read as text
    with ``errors="replace"``); only a column that holds invalid UTF-8 is decoded in Python."""
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        texts = [None if v is None else v.decode("utf-8", "replace") for v in column.to_pylist()]
        return pa.chunked_array([pa.array(texts, pa.string())])


def _frame_of(table: pa.Table, first_row: int) -> pd.DataFrame:
    texts = pa.table({name: _as_text(table.column(name)) for name in table.column_names})
    frame = texts.to_pandas()
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    return frame


def _chunks(path: Path, expected: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's data rows as text, about ``chunk_rows`` at a time.

    Parsed by Arrow's CSV reader (C++, no Python object per field), every column as bytes
    and then UTF-8 text: empty fields stay ``""`` and ``NA`` stays text, as the columns
    are parsed by this module, not by the reader.
    """
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    header = _read_header(path)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.binary() for name in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    checked = False
    rows = 0
    pending: pa.Table | None = None
    with _open_binary(path) as handle:
        try:
            reader = pacsv.open_csv(
                handle, read_options=read, parse_options=parse, convert_options=convert
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                more = pa.Table.from_batches([batch])
                pending = more if pending is None else pa.concat_tables([pending, more])
                while pending.num_rows >= chunk_rows:
                    chunk = _frame_of(pending.slice(0, chunk_rows), rows)
                    pending, rows = pending.slice(chunk_rows), rows + chunk_rows
                    checked = _check_ragged(path, expected, chunk, checked)
                    yield chunk
        except pa.ArrowInvalid as exc:
            raise _ragged_row_error(path, expected, str(exc)) or DataFormatError(
                path, 1, None, f"cannot parse the file: {exc}"
            ) from None
    if pending is not None and pending.num_rows:
        chunk = _frame_of(pending, rows)
        _check_ragged(path, expected, chunk, checked)
        yield chunk


def _check_ragged(path: Path, expected: int, chunk: pd.DataFrame, checked: bool) -> bool:
    """An empty last field may hint at a short row: confirm with an exact scan (once)."""
    if not checked and (chunk.iloc[:, -1] == "").any():
        error = _ragged_row_error(path, expected, None)
        if error is not None:
            raise error
        return True
    return checked


# -- column parsing (vectorised) ----------------------------------------------------------------


def _clean(values: pd.Series) -> pd.Series:
    """Stripped text with ``""`` / ``NA`` as missing."""
    text = values.str.strip()
    return text.mask(text.isin(MISSING_TEXT))


def _number(values: pd.Series) -> pd.Series:
    """Float parse; non-numbers become NaN.

    Parses each distinct text once: flag columns hold a handful of spellings (``" 1"``,
    ``"1.0"``, ``"NA"``) over millions of rows, and ``to_numeric`` on text is slow.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = pd.to_numeric(_clean(pd.Series(uniques, dtype="str")), errors="coerce")
    lookup = np.append(parsed.to_numpy(dtype="float64", na_value=np.nan), np.nan)
    return pd.Series(lookup[codes], index=values.index, dtype="float64")


def _date(values: pd.Series) -> pd.Series:
    return pd.to_datetime(_clean(values), format="%Y-%m-%d", errors="coerce").astype(
        "datetime64[ns]"
    )


def _reject(reasons: pd.Series, mask: pd.Series | np.ndarray, reason: str) -> None:
    """Record ``reason`` for rows in ``mask`` that have no earlier reason."""
    reasons[np.asarray(mask) & reasons.isna().to_numpy()] = reason


def _parse_chunk(
    raw: pd.DataFrame,
    codes: list[str],
    first_row: int,
    rejections: Counter[str],
    warnings: Counter[str],
) -> ParsedChunk:
    reasons = pd.Series(pd.NA, index=raw.index, dtype="object")

    cust_text = _clean(raw["ncodpers"])
    cust = pd.to_numeric(cust_text, errors="coerce")
    _reject(reasons, cust_text.isna(), "missing customer id")
    well_formed = cust_text.str.fullmatch(r"\d{1,18}").fillna(False).astype(bool)
    _reject(reasons, ~well_formed | ~(cust > 0).fillna(False).astype(bool), "bad customer id")

    month_text = _clean(raw["fecha_dato"])
    month = _date(raw["fecha_dato"])
    _reject(reasons, month_text.isna(), "missing fecha_dato")
    _reject(reasons, month.isna(), "bad fecha_dato")

    age_text = _clean(raw["age"])
    age = _number(raw["age"])
    _reject(reasons, age_text.isna(), "missing age")
    _reject(reasons, age.isna(), "age not a number")
    in_range = age.between(0, MAX_AGE) & (age == np.floor(age))
    _reject(reasons, ~in_range.fillna(False).astype(bool), f"age out of range 0..{MAX_AGE}")

    flags: dict[str, np.ndarray] = {}
    unknown_flag: dict[str, np.ndarray] = {}
    for code in codes:
        value = _number(raw[code])
        unknown_flag[code] = _clean(raw[code]).isna().to_numpy()
        bad = ~unknown_flag[code] & ~value.isin((0.0, 1.0)).to_numpy()
        _reject(reasons, bad, f"bad product flag {code}")
        flags[code] = value.fillna(0).to_numpy().astype(np.int8)

    rejected = reasons.notna().to_numpy()
    rejections.update({str(k): int(v) for k, v in reasons[rejected].value_counts().items()})
    keep = ~rejected
    for code in codes:
        missing = int((unknown_flag[code] & keep).sum())
        if missing:
            warnings[f"missing product flag {code} -> 0"] += missing

    activity = _number(raw["ind_actividad_cliente"])
    active = pd.array(activity.eq(1.0).to_numpy(), dtype="boolean")
    active[~activity.isin((0.0, 1.0)).to_numpy()] = pd.NA

    base = {
        "cust": cust.to_numpy()[keep].astype(np.int64),
        "month": month.to_numpy()[keep],
        "row": np.arange(first_row, first_row + len(raw), dtype=np.int64)[keep],
    }
    keys = pd.DataFrame(
        {**base, "active": active[keep], **{code: flags[code][keep] for code in codes}}
    )
    resident_text = _clean(raw["indresi"])
    resident = pd.array(resident_text.eq("S").to_numpy(dtype=bool), dtype="boolean")
    resident[resident_text.isna().to_numpy()] = pd.NA
    profile = pd.DataFrame(
        {
            **base,
            "age": age.to_numpy()[keep],
            "sex": _clean(raw["sexo"]).map(SEX).to_numpy()[keep],
            "joined": _date(raw["fecha_alta"]).to_numpy()[keep],
            "segmento": _clean(raw["segmento"]).to_numpy()[keep],
            "income": _number(raw["renta"]).to_numpy()[keep],
            "region": _clean(raw["nomprov"]).to_numpy()[keep],
            "channel": _optional_text(raw, "canal_entrada")[keep],
            "resident": resident[keep],
            "employee": (~_clean(raw["ind_empleado"]).fillna("N").eq("N")).to_numpy()[keep],
        }
    )
    return ParsedChunk(keys=keys, profile=_latest_per_customer(profile))


def _optional_text(raw: pd.DataFrame, column: str) -> np.ndarray:
    """A text column that a file may lack (then every value is unknown)."""
    if column not in raw.columns:
        return np.full(len(raw), None, dtype=object)
    return _clean(raw[column]).to_numpy(dtype=object)


def _latest_per_customer(profile: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: the first row of their latest month (duplicates are rejected)."""
    ordered = profile.sort_values(["cust", "month", "row"], kind="mergesort")
    ordered = ordered.drop_duplicates(["cust", "month"], keep="first")
    return ordered.drop_duplicates("cust", keep="last")
