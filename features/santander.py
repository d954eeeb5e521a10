"""Import the Santander Product Recommendation data (Kaggle ``train_ver2.csv``) unchanged.

The file is read and every column parsed and checked by ``features/santander_csv.py``; this
module turns the accepted rows into the canonical tables, in memory
(:func:`import_santander`) or streamed into a partitioned set
(:func:`import_santander_partitioned`).

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

The result counts the rows the reader rejected and the cells it defaulted, by reason; a
file whose structure is wrong raises :class:`~features.errors.DataFormatError` naming the
line (both: ``features/santander_csv.py``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.tables import Tables, empty_contracts
from features.santander_csv import merge_latest, no_valid_rows, open_csv, parse_chunks

log = logging.getLogger(__name__)

CHUNK_ROWS = 500_000
AFFLUENT_INCOME = 150_000.0
"""Santander publishes no assets; household income above this counts as affluent."""

SEGMENTS = {
    "01 - TOP": "vip",
    "02 - PARTICULARES": "individuals",
    "03 - UNIVERSITARIO": "graduates",
}
PRIVATE_SEGMENT = "01 - TOP"

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
    csv_file = open_csv(path, catalogue)
    rejections: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    keys: list[pd.DataFrame] = []
    latest: pd.DataFrame | None = None
    rows_read = 0
    for rows_read, parsed in parse_chunks(csv_file, chunk_rows, rejections, warnings):
        keys.append(parsed.keys)
        latest = merge_latest(latest, parsed.profile)
        if progress is not None:
            progress(rows_read)

    all_keys = pd.concat(keys, ignore_index=True) if keys else pd.DataFrame()
    if all_keys.empty or latest is None:
        raise no_valid_rows(path, rows_read, rejections)
    all_keys = _without_duplicates(all_keys, rejections)

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


def _without_duplicates(keys: pd.DataFrame, rejections: Counter[str]) -> pd.DataFrame:
    """``keys`` in file order without a customer's later rows of the same month (counted in
    ``rejections``)."""
    keys = keys.sort_values("row", kind="mergesort")
    duplicate = keys.duplicated(["cust", "month"], keep="first").to_numpy()
    if duplicate.any():
        rejections[DUPLICATE] += int(duplicate.sum())
        keys = keys[~duplicate]
    return keys


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
    csv_file = open_csv(path, catalogue)
    rejections: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    latest: pd.DataFrame | None = None
    rows_read = 0
    months: set[np.datetime64] = set()
    data_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".santander-spill-", dir=data_dir))
    try:
        spilled: list[Path] = []
        for rows_read, parsed in parse_chunks(csv_file, chunk_rows, rejections, warnings):
            keys = parsed.keys
            keys["hash"] = customer_hashes(keys["cust"].astype(str).to_numpy(dtype=object))
            months.update(keys["month"].unique().tolist())
            target = spill / f"chunk-{len(spilled):05d}.parquet"
            pq.write_table(pa.Table.from_pandas(keys, preserve_index=False), target)
            spilled.append(target)
            latest = merge_latest(latest, parsed.profile)
            del parsed, keys
            if progress is not None:
                rate = rows_read / max(time.perf_counter() - started, 1e-9)
                progress(f"{rows_read:,} rows read ({rate:,.0f} rows/s)")
        if latest is None or latest.empty:
            raise no_valid_rows(path, rows_read, rejections)
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
                keys = _without_duplicates(_partition_rows(spilled, k, partitions), rejections)
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
