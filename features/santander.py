"""Import the Santander Product Recommendation data (Kaggle ``train_ver2.csv``) unchanged.

The file is read as text (``dtype=str``, no NA guessing) in chunks and every column is
parsed here, vectorised, because the raw file mixes padded numbers (``" 35"``), ``NA``,
empty strings and floats (``1.0``) in the same column.

Mapping decisions worth knowing:

* ``sexo``: ``H`` -> ``"F"``, ``V`` -> ``"M"``. ``V`` is *varón* (male), so ``H`` is the
  female code (*hembra*); the data agree: ``H`` is the majority among customers aged 80+,
  as women are in any population that old.
* ``birth_date`` is the customer's latest snapshot minus ``age`` years (the data publish an
  age, not a date of birth), flagged ``birth_date_estimated`` (its month and day are the
  snapshot's, so ``birth_month`` is null); a row with a missing or impossible age is
  rejected.
* ``risk_level`` / ``risk_assessed_on`` are null: Santander has no risk questionnaire, so
  suitability treats every imported customer as unassessed and allows only R1 products.
  That is the correct, conservative outcome, not a gap to paper over.
* Behaviour has the activity flag only (logins, balance and flows are not published).
* ``canal_entrada`` (the channel the customer joined through, a three-letter code such as
  ``KAT``) -> ``acquisition_channel``, unchanged; optional (a file without it imports with
  the channel unknown). ``preferred_channel`` stays null: how a customer joined is not the
  channel they want to be contacted on.
* ``contracts`` is written empty (:data:`NO_CONTRACTS`): the data say which deposit and loan
  products a customer holds at each month end, never a contract's opening or maturity date
  or its amount, and none is made up. The maturity field is then empty for every customer
  and the maturity outflow model cannot be trained on this data.

Rows that cannot be used are rejected with a reason and counted; cells that can be read
with a safe default (a missing product flag -> not held) are counted as warnings. A file
whose *structure* is wrong (missing or unknown columns, a row with the wrong number of
fields) raises :class:`~features.errors.DataFormatError` naming the line.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import logging
import lzma
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from core.catalogue import Catalogue
from core.tables import Tables, empty_contracts
from features.errors import DataFormatError

log = logging.getLogger(__name__)

CHUNK_ROWS = 500_000
MAX_AGE = 120
AFFLUENT_INCOME = 150_000.0
"""Santander publishes no assets; household income above this counts as affluent."""

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
SEGMENTS = {
    "01 - TOP": "vip",
    "02 - PARTICULARES": "individuals",
    "03 - UNIVERSITARIO": "graduates",
}
PRIVATE_SEGMENT = "01 - TOP"
COMPRESSION: dict[str, Literal["gzip", "bz2", "xz"]] = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}

DUPLICATE = "duplicate customer and month"
MISSING_JOINED = "missing fecha_alta -> first month seen"


@dataclass
class SantanderImport:
    """The canonical tables plus an account of what was read, rejected and defaulted."""

    tables: Tables
    rows_read: int
    rows_rejected: int
    rejections: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    months: list[date] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the import leaves empty, and why


NO_CONTRACTS = (
    "contracts table left empty: the Santander data have no contract dates or amounts "
    "(only which products are held each month), so no maturity is known and none is made up"
)


@dataclass
class _Parsed:
    """Accepted rows of one chunk: keys and holdings for every row, profile columns too."""

    keys: pd.DataFrame  # cust (int64), month, row (int64), active (boolean), product codes
    profile: pd.DataFrame  # cust, month, row, age, sex, joined, segmento, income, ...


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
) -> _Parsed:
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
    return _Parsed(keys=keys, profile=_latest_per_customer(profile))


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


# -- canonical tables ---------------------------------------------------------------------------


def _years_before(when: pd.Series, years: pd.Series) -> pd.Series:
    """``when`` minus whole ``years`` (29 February falls back to the 28th)."""
    day = when.dt.day.where(~((when.dt.month == 2) & (when.dt.day == 29)), 28)
    parts = pd.DataFrame(
        {"year": when.dt.year - years.astype(int), "month": when.dt.month, "day": day}
    )
    return pd.to_datetime(parts).astype("datetime64[ns]")


def _customers(
    profile: pd.DataFrame, first_seen: pd.Series, warnings: Counter[str]
) -> pd.DataFrame:
    first = first_seen.reindex(profile["cust"]).to_numpy()
    joined = profile["joined"].to_numpy()
    no_join = pd.isna(joined)
    if no_join.any():
        warnings[MISSING_JOINED] += int(no_join.sum())
    segmento = profile["segmento"]
    income = profile["income"].astype("float64")
    tier = np.where(
        segmento.eq(PRIVATE_SEGMENT).fillna(False),
        "private",
        np.where(income.ge(AFFLUENT_INCOME).fillna(False), "affluent", "mass"),
    )
    size = len(profile)
    return pd.DataFrame(
        {
            "customer_id": profile["cust"].astype(str).to_numpy(),
            "birth_date": _years_before(profile["month"], profile["age"]).to_numpy(),
            "sex": profile["sex"].to_numpy(),
            "joined_on": np.where(no_join, first, joined).astype("datetime64[ns]"),
            "left_on": np.full(size, np.datetime64("NaT"), dtype="datetime64[ns]"),
            "tier": tier,
            "segment": segmento.map(SEGMENTS).to_numpy(),
            "income": income.to_numpy(),
            "region": profile["region"].to_numpy(),
            "resident": profile["resident"].to_numpy(),
            "employee": profile["employee"].to_numpy().astype(bool),
            "risk_level": pd.array([pd.NA] * size, dtype="Int8"),
            "risk_assessed_on": np.full(size, np.datetime64("NaT"), dtype="datetime64[ns]"),
            "preferred_channel": np.full(size, None, dtype=object),
            "acquisition_channel": profile["channel"].to_numpy(),
            "birth_date_estimated": np.ones(size, dtype=bool),
        }
    )


def _tables(
    keys: pd.DataFrame, profile: pd.DataFrame, catalogue: Catalogue, warnings: Counter[str]
) -> Tables:
    keys = keys.sort_values(["cust", "month"], kind="mergesort").reset_index(drop=True)
    customer_id = keys["cust"].astype(str).to_numpy()
    month = keys["month"].to_numpy().astype("datetime64[ns]")
    holdings = pd.DataFrame({"customer_id": customer_id, "month": month})
    for product in catalogue.holdable:
        code = product.santander_code
        column = keys[code] if code in keys.columns else np.zeros(len(keys))
        holdings[product.id] = np.asarray(column, dtype=np.int8)
    unknown = np.full(len(keys), np.nan)
    behaviour = pd.DataFrame(
        {
            "customer_id": customer_id,
            "month": month,
            "logins": pd.array([pd.NA] * len(keys), dtype="Int32"),
            "balance": unknown,
            "inflow": unknown.copy(),
            "outflow": unknown.copy(),
            "active": keys["active"].astype("boolean").to_numpy(),
        }
    )
    first_seen = keys.groupby("cust")["month"].min()
    profile = profile.sort_values("cust").reset_index(drop=True)
    return Tables(
        customers=_customers(profile, first_seen, warnings),
        holdings=holdings,
        behaviour=behaviour,
        contracts=empty_contracts(),
    )


def import_santander(
    path: Path,
    catalogue: Catalogue,
    progress: Callable[[int], None] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> SantanderImport:
    """Read a ``train_ver2.csv``-format file (plain or gzip) into the canonical tables.

    ``progress`` is called after each chunk with the number of data rows read so far.
    Raises :class:`DataFormatError` for an empty file, missing required columns, a product
    column the catalogue does not know, a row with the wrong number of fields, or a file
    with no usable row at all.
    """
    path = Path(path)
    header = _read_header(path)
    codes = _product_codes(path, header, catalogue)
    rejections: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    keys: list[pd.DataFrame] = []
    latest: pd.DataFrame | None = None
    rows_read = 0
    for raw in _chunks(path, len(header), chunk_rows):
        parsed = _parse_chunk(raw, codes, rows_read, rejections, warnings)
        rows_read += len(raw)
        keys.append(parsed.keys)
        candidates = parsed.profile if latest is None else pd.concat([latest, parsed.profile])
        latest = _latest_per_customer(candidates)
        if progress is not None:
            progress(rows_read)

    all_keys = pd.concat(keys, ignore_index=True) if keys else pd.DataFrame()
    if all_keys.empty or latest is None:
        what = "no data rows" if rows_read == 0 else f"all {rows_read} rows rejected"
        raise DataFormatError(path, 1, None, f"no valid rows: {what} ({dict(rejections)})")
    all_keys = all_keys.sort_values("row", kind="mergesort")
    duplicate = all_keys.duplicated(["cust", "month"], keep="first").to_numpy()
    if duplicate.any():
        rejections[DUPLICATE] += int(duplicate.sum())
        all_keys = all_keys[~duplicate]

    tables = _tables(all_keys, latest, catalogue, warnings)
    log.info(NO_CONTRACTS)
    months = sorted(pd.Timestamp(m).date() for m in all_keys["month"].unique())
    return SantanderImport(
        tables=tables,
        rows_read=rows_read,
        rows_rejected=sum(rejections.values()),
        rejections=rejections,
        warnings=warnings,
        months=months,
        notes=[NO_CONTRACTS],
    )


# -- streaming into partitions ------------------------------------------------------------------


@dataclass
class StreamedImport:
    """What :func:`import_santander_partitioned` read, rejected, defaulted and wrote."""

    rows_read: int
    rows_rejected: int
    customers: int
    holdings_rows: int
    partitions: int
    seconds: float
    rejections: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    months: list[date] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / max(self.seconds, 1e-9)


def import_santander_partitioned(
    path: Path,
    catalogue: Catalogue,
    data_dir: Path,
    customers_per_partition: int,
    progress: Callable[[str], None] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> StreamedImport:
    """Stream a ``train_ver2.csv``-format file into a partitioned table set in ``data_dir``.

    One pass over the file in chunks of ``chunk_rows``: each chunk is parsed as by
    :func:`import_santander`, its accepted rows spilled to a Parquet file with the
    customer's hash (``core.partitions.customer_hashes``), and only the latest profile per
    customer kept in memory. Then, with P = ceil(customers / ``customers_per_partition``),
    each partition's rows are gathered from the spill, de-duplicated and written
    (``core.tables.PartitionedWriter``). Memory: one chunk, the latest profile of each
    customer (one row each) and one partition, never the whole file. Any error (a row with
    the wrong number of fields: :class:`DataFormatError` with file, line and column) leaves
    ``data_dir`` as it was; the spill is deleted either way. ``progress`` gets a message
    with the rows read and the rate after each chunk, then one per partition.
    """
    import shutil
    import tempfile
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.partitions import customer_hashes, partition_count
    from core.tables import PartitionedWriter, contract_products

    started = time.perf_counter()
    path = Path(path)
    header = _read_header(path)
    codes = _product_codes(path, header, catalogue)
    rejections: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    latest: pd.DataFrame | None = None
    rows_read = 0
    months: set[np.datetime64] = set()
    data_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".santander-spill-", dir=data_dir))
    try:
        spilled: list[Path] = []
        for raw in _chunks(path, len(header), chunk_rows):
            parsed = _parse_chunk(raw, codes, rows_read, rejections, warnings)
            rows_read += len(raw)
            keys = parsed.keys
            keys["hash"] = customer_hashes(keys["cust"].astype(str).to_numpy(dtype=object))
            months.update(keys["month"].unique().tolist())
            target = spill / f"chunk-{len(spilled):05d}.parquet"
            pq.write_table(pa.Table.from_pandas(keys, preserve_index=False), target)
            spilled.append(target)
            candidates = parsed.profile if latest is None else pd.concat([latest, parsed.profile])
            latest = _latest_per_customer(candidates)
            del raw, parsed, keys
            if progress is not None:
                rate = rows_read / max(time.perf_counter() - started, 1e-9)
                progress(f"{rows_read:,} rows read ({rate:,.0f} rows/s)")
        if latest is None or latest.empty:
            what = "no data rows" if rows_read == 0 else f"all {rows_read} rows rejected"
            raise DataFormatError(path, 1, None, f"no valid rows: {what} ({dict(rejections)})")
        partitions = partition_count(len(latest), customers_per_partition)
        where = (
            customer_hashes(latest["cust"].astype(str).to_numpy(dtype=object))
            % np.uint64(partitions)
        ).astype(np.int64)
        holdings_rows = 0
        with PartitionedWriter(
            data_dir, [p.id for p in catalogue.holdable], contract_products(catalogue), partitions
        ) as writer:
            for k in range(partitions):
                if progress is not None:
                    progress(f"writing partition {k + 1}/{partitions}")
                keys = _partition_rows(spilled, k, partitions)
                keys = keys.sort_values("row", kind="mergesort")
                duplicate = keys.duplicated(["cust", "month"], keep="first").to_numpy()
                if duplicate.any():
                    rejections[DUPLICATE] += int(duplicate.sum())
                    keys = keys[~duplicate]
                tables = _tables(keys.drop(columns="hash"), latest[where == k], catalogue, warnings)
                holdings_rows += len(tables.holdings)
                writer.write(k, tables)
                del keys, tables
            writer.commit()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    log.info(NO_CONTRACTS)
    return StreamedImport(
        rows_read=rows_read,
        rows_rejected=sum(rejections.values()),
        customers=len(latest),
        holdings_rows=holdings_rows,
        partitions=partitions,
        seconds=time.perf_counter() - started,
        rejections=rejections,
        warnings=warnings,
        months=sorted(pd.Timestamp(m).date() for m in months),
        notes=[NO_CONTRACTS],
    )


def _partition_rows(spilled: list[Path], partition: int, partitions: int) -> pd.DataFrame:
    """The spilled rows of one partition's customers, from every chunk file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for file in spilled:
        table = pq.read_table(file)
        hashes = table.column("hash").to_numpy()
        parts.append(table.filter(pa.array(hashes % np.uint64(partitions) == partition)))
    return pa.concat_tables(parts).to_pandas()
