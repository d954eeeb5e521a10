"""The project's canonical tables: what every importer writes and every job reads.

Three Parquet tables, and an optional fourth, live in one folder (``Settings.data_dir``):

``customers``  one row per customer (master data)
``holdings``   one row per customer and month-end snapshot; one 0/1 column per holdable
               catalogue product id (``Catalogue.holdable``)
``behaviour``  one row per customer and month-end: logins, balance (assets under
               management), inflow, outflow, active flag (nullable where unknown)

``month`` is the snapshot date as published (Santander uses the 28th; the generator the
last day of the month). Point-in-time code uses only rows with ``month <= as_of``.

Two layouts, both read by :func:`read_tables`:

single file   ``customers.parquet``, ``holdings.parquet``, ``behaviour.parquet``,
              ``contracts.parquet``
partitioned   ``customers/part-00000.parquet`` ... one file per partition and table, and
              ``partitions.json`` (the manifest: partition count, hash, customers). A
              customer's rows of every table are in the file of its partition
              (``core/partitions.py``), so :func:`read_partition` reads a partition's
              customers with all their rows and a job's memory is bounded by the partition
              size. Each table folder is a plain Parquet dataset (Spark, DuckDB and pyarrow
              read it as one table).

A table set is written to a staging folder and moved into place only after every table
(and every partition) is complete, the manifest last, so a failed import never leaves a
partial set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from core.catalogue import Catalogue

CHANNELS = ("app", "push", "sms", "email", "advisor", "branch")
TIERS = ("mass", "affluent", "private")

CUSTOMER_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("birth_date", pa.date32()),  # nullable: unknown age
        ("sex", pa.string()),  # "F" / "M" / null
        ("joined_on", pa.date32()),  # first contract with the bank
        ("left_on", pa.date32()),  # nullable: date the customer closed the relationship
        ("tier", pa.string()),  # TIERS
        ("segment", pa.string()),  # nullable, free text (e.g. Santander "individuals")
        ("income", pa.float64()),  # nullable, annual gross household income
        ("region", pa.string()),  # nullable
        ("resident", pa.bool_()),  # nullable
        ("employee", pa.bool_()),
        ("risk_level", pa.int8()),  # nullable, investor level 1..5 (C1..C5)
        ("risk_assessed_on", pa.date32()),  # nullable
        ("preferred_channel", pa.string()),  # CHANNELS or null
        ("acquisition_channel", pa.string()),  # nullable, free text: how the customer joined
        ("birth_date_estimated", pa.bool_()),  # nullable: birth_date derived from an age
    ]
)

OPTIONAL_CUSTOMER_COLUMNS = ("acquisition_channel", "birth_date_estimated")
"""Nullable master columns a table set may lack: a frame (or a Parquet file) without them
reads and writes them as unknown."""

BEHAVIOUR_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("month", pa.date32()),
        ("logins", pa.int32()),  # nullable
        ("balance", pa.float64()),  # nullable, assets under management at month end
        ("inflow", pa.float64()),  # nullable
        ("outflow", pa.float64()),  # nullable
        ("active", pa.bool_()),  # nullable
    ]
)

HOLDINGS_KEY_COLUMNS = ("customer_id", "month")

CONTRACT_SCHEMA = pa.schema(
    [
        ("contract_id", pa.string()),  # the bank's contract number (never leaves offline jobs)
        ("customer_id", pa.string()),
        ("product", pa.string()),  # a catalogue deposit or lending product id
        ("opened_on", pa.date32()),
        ("maturity_date", pa.date32()),  # nullable: a product without a fixed term
        ("amount", pa.float64()),  # principal, >= 0
        ("closed_on", pa.date32()),  # nullable: still open (or not known to have ended)
        ("outcome", pa.string()),  # nullable; CONTRACT_OUTCOMES once closed_on is set
    ]
)
CONTRACT_OUTCOMES = ("renewed", "moved", "left", "repaid")
"""How a contract ended: renewed into a new contract of the same product, its money moved to
another product of the bank, its money left the bank, or (loans) repaid."""
CONTRACT_CATEGORIES = ("deposit", "lending")
"""Catalogue categories whose products are held as dated contracts."""
CONTRACT_DATES = ("opened_on", "maturity_date", "closed_on")


class ContractsError(ValueError):
    """A contracts row breaks a rule; the message names the row, the contract and the rule."""


def contract_products(catalogue: Catalogue) -> frozenset[str]:
    """Holdable catalogue products that are contracts (term deposits and loans)."""
    return frozenset(p.id for p in catalogue.holdable if p.category in CONTRACT_CATEGORIES)


def empty_contracts() -> pd.DataFrame:
    """A contracts frame with no rows and every column (what a set without contracts reads as)."""
    frame = CONTRACT_SCHEMA.empty_table().to_pandas()
    for column in CONTRACT_DATES:
        frame[column] = pd.to_datetime(frame[column])
    return frame


def validate_contracts(
    contracts: pd.DataFrame,
    products: Collection[str],
    products_are: str = "a deposit or loan product of the catalogue",
) -> None:
    """Raise :class:`ContractsError` at the first row that breaks a rule.

    Rules: every column present; contract_id present and unique; opened_on set; maturity_date
    (where set) after opened_on; amount a number >= 0; product one of ``products``;
    closed_on not before opened_on; outcome one of ``CONTRACT_OUTCOMES`` or empty. Rows are
    numbered from 1 in frame order. Why: a bad contract would silently corrupt labels and
    the maturity field, so an import or a write stops before anything is written.
    """
    missing = [c for c in CONTRACT_SCHEMA.names if c not in contracts.columns]
    if missing:
        raise ContractsError(f"contracts table is missing columns: {', '.join(missing)}")
    if contracts.empty:
        return
    ids = contracts["contract_id"]
    opened = pd.to_datetime(contracts["opened_on"])
    maturity = pd.to_datetime(contracts["maturity_date"])
    closed = pd.to_datetime(contracts["closed_on"])
    amount = pd.to_numeric(contracts["amount"], errors="coerce").astype("float64")
    outcome = contracts["outcome"]
    checks: list[tuple[pd.Series, str]] = [
        (ids.isna(), "contract_id is empty"),
        (ids.duplicated(keep="first") & ids.notna(), "contract_id is a duplicate"),
        (opened.isna(), "opened_on is empty"),
        (
            maturity.notna() & opened.notna() & (maturity <= opened),
            "maturity_date {maturity} is not after opened_on {opened}",
        ),
        (amount.isna(), "amount {amount!r} is not a number"),
        (amount < 0, "amount {amount} is negative"),
        (
            ~contracts["product"].isin(list(products)),
            "product {product!r} is not " + products_are,
        ),
        (
            closed.notna() & opened.notna() & (closed < opened),
            "closed_on {closed} is before opened_on {opened}",
        ),
        (
            outcome.notna() & ~outcome.isin(CONTRACT_OUTCOMES),
            "outcome {outcome!r} is not one of " + ", ".join(CONTRACT_OUTCOMES),
        ),
    ]
    bad = [
        (int(np.flatnonzero(mask.to_numpy(dtype=bool))[0]), text)
        for mask, text in checks
        if mask.to_numpy(dtype=bool).any()
    ]
    if not bad:
        return
    row, text = min(bad, key=lambda item: item[0])
    values = {
        "maturity": _day(maturity.iloc[row]),
        "opened": _day(opened.iloc[row]),
        "closed": _day(closed.iloc[row]),
        "amount": contracts["amount"].iloc[row],
        "product": contracts["product"].iloc[row],
        "outcome": outcome.iloc[row],
    }
    raise ContractsError(
        f"contracts row {row + 1} (contract_id {ids.iloc[row]!r}): {text.format(**values)}"
    )


def _day(value: Any) -> str:
    return "empty" if pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def holdings_schema(product_ids: list[str]) -> pa.Schema:
    """Schema of the holdings table for a catalogue's holdable product ids."""
    fields = [pa.field("customer_id", pa.string()), pa.field("month", pa.date32())]
    fields += [pa.field(pid, pa.int8()) for pid in product_ids]
    return pa.schema(fields)


@dataclass
class Tables:
    """The canonical tables as pandas frames (dates as ``datetime64[ns]``).

    ``contracts`` is optional: a bank without contract dates (Santander) has an empty one.
    """

    customers: pd.DataFrame
    holdings: pd.DataFrame
    behaviour: pd.DataFrame
    contracts: pd.DataFrame = field(default_factory=empty_contracts)


def empty_tables(product_ids: list[str]) -> Tables:
    """A table set with no rows and every column (an empty partition)."""

    def empty(schema: pa.Schema) -> pd.DataFrame:
        frame = schema.empty_table().to_pandas()
        for col in frame.columns:
            if col in (*CONTRACT_DATES, *DATE_COLUMNS):
                frame[col] = pd.to_datetime(frame[col])
        return frame

    return Tables(
        customers=empty(CUSTOMER_SCHEMA),
        holdings=empty(holdings_schema(product_ids)),
        behaviour=empty(BEHAVIOUR_SCHEMA),
        contracts=empty_contracts(),
    )


TABLE_FILES = {
    "customers": "customers.parquet",
    "holdings": "holdings.parquet",
    "behaviour": "behaviour.parquet",
}
OPTIONAL_TABLE_FILES = {"contracts": "contracts.parquet"}
"""Tables a set may lack: read as empty when their file is absent."""


class TablesMissingError(FileNotFoundError):
    """The data folder holds no complete table set."""


def with_optional_columns(customers: pd.DataFrame) -> pd.DataFrame:
    """``customers`` with every optional master column present (unknown where absent)."""
    absent = [c for c in OPTIONAL_CUSTOMER_COLUMNS if c not in customers.columns]
    if not absent:
        return customers
    return customers.assign(
        **{c: pd.Series(None, index=customers.index, dtype=object) for c in absent}
    )


def _to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    if schema is CUSTOMER_SCHEMA:
        frame = with_optional_columns(frame)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"table is missing columns: {', '.join(missing)}")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


PARTITION_MANIFEST = "partitions.json"
"""The partitioned layout's manifest; written last, so its presence marks a complete set."""
PART_FILE = "part-{:05d}.parquet"
DATE_COLUMNS = ("birth_date", "joined_on", "left_on", "risk_assessed_on", "month")
ALL_TABLES = (*TABLE_FILES, *OPTIONAL_TABLE_FILES)


@dataclass(frozen=True)
class TableLayout:
    """How a data folder holds its table set: ``partitions`` is 1 for the single-file layout."""

    partitioned: bool
    partitions: int
    customers: int | None = None  # from the manifest; None for the single-file layout


def table_layout(data_dir: Path) -> TableLayout:
    """The layout of the table set in ``data_dir`` (raises when there is none)."""
    manifest = data_dir / PARTITION_MANIFEST
    if manifest.exists():
        try:
            meta = json.loads(manifest.read_text())
            partitions = int(meta["partitions"])
            customers = int(meta["customers"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TablesMissingError(f"{manifest}: not a partition manifest ({exc})") from None
        return TableLayout(partitioned=True, partitions=partitions, customers=customers)
    missing = [str(data_dir / name) for name in TABLE_FILES.values()]
    missing = [p for p in missing if not Path(p).exists()]
    if missing:
        raise TablesMissingError(
            f"no canonical tables in {data_dir} (missing {', '.join(missing)}); "
            "run `nbo data generate` or `nbo data import-santander` first"
        )
    return TableLayout(partitioned=False, partitions=1)


def split_tables(tables: Tables, partitions: int) -> list[Tables]:
    """The tables cut into ``partitions`` parts by the customer's partition (order kept)."""
    from core.partitions import partitions_of

    parts: list[dict[str, pd.DataFrame]] = [{} for _ in range(partitions)]
    for name in ALL_TABLES:
        frame: pd.DataFrame = getattr(tables, name)
        where = partitions_of(frame["customer_id"].astype(str).to_numpy(dtype=object), partitions)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(partitions + 1))
        for k in range(partitions):
            rows = order[bounds[k] : bounds[k + 1]]
            parts[k][name] = frame.iloc[rows].reset_index(drop=True)
    return [Tables(**part) for part in parts]


class PartitionedWriter:
    """Write a partitioned table set one partition at a time, atomically.

    Each :meth:`write` validates the partition's contracts and writes its four files to a
    staging folder; :meth:`commit` checks that every partition was written and moves the
    table folders into place, the manifest last. Used as a context manager, leaving the
    block with an error (or without commit) deletes the staging folder and leaves the data
    folder as it was::

        with PartitionedWriter(data_dir, product_ids, contract_ids, partitions=4) as out:
            for k in range(4):
                out.write(k, tables_of_partition(k))
            out.commit()
    """

    def __init__(
        self,
        data_dir: Path,
        product_ids: list[str],
        contract_product_ids: Collection[str] | None,
        partitions: int,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"the number of partitions must be at least 1, got {partitions}")
        self.data_dir = data_dir
        self.product_ids = product_ids
        self.contract_product_ids = contract_product_ids
        self.partitions = partitions
        self._written: set[int] = set()
        self._customers = 0
        self._staging: Path | None = None

    def __enter__(self) -> PartitionedWriter:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.data_dir))
        for name in ALL_TABLES:
            (self._staging / name).mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def write(self, partition: int, tables: Tables) -> None:
        """Stage partition ``partition`` (its customers' rows of every table)."""
        if self._staging is None:
            raise RuntimeError("PartitionedWriter.write outside its with block")
        if not 0 <= partition < self.partitions or partition in self._written:
            raise ValueError(f"partition {partition} is out of range or written twice")
        try:
            _validate(tables, self.product_ids, self.contract_product_ids)
        except ContractsError as exc:
            raise ContractsError(f"partition {partition}: {exc}") from None
        _write_files(
            tables,
            self.product_ids,
            {name: self._staging / name / PART_FILE.format(partition) for name in ALL_TABLES},
        )
        self._written.add(partition)
        self._customers += int(tables.customers["customer_id"].nunique())

    def commit(self) -> None:
        """Move the complete set into place (raises if a partition is missing)."""
        from core.partitions import PARTITION_HASH_KEY

        if self._staging is None:
            raise RuntimeError("PartitionedWriter.commit outside its with block")
        missing = sorted(set(range(self.partitions)) - self._written)
        if missing:
            raise ValueError(f"partitions not written: {', '.join(map(str, missing))}")
        manifest = {
            "layout": "partitioned",
            "partitions": self.partitions,
            "customers": self._customers,
            "hash": "fnv1a64-splitmix64 of the customer id, keyed (core/partitions.py)",
            "hash_key": f"{PARTITION_HASH_KEY:#x}",
            "tables": list(ALL_TABLES),
        }
        (self._staging / PARTITION_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(self._staging, self.data_dir, partitioned=True)


def write_tables(
    tables: Tables,
    data_dir: Path,
    product_ids: list[str],
    contract_product_ids: Collection[str] | None = None,
    partitions: int | None = None,
) -> None:
    """Write every table atomically (staging folder, moved into place when complete).

    ``contract_product_ids`` (:func:`contract_products` of the catalogue) are the products
    a contract may name (without them: any of ``product_ids``); contracts are validated
    (:func:`validate_contracts`) before any file is written, so a bad row leaves the folder
    as it was. ``partitions``: None writes the single-file layout; a number writes the
    partitioned layout with that many partitions (:func:`split_tables`).
    """
    _validate(tables, product_ids, contract_product_ids)
    if partitions is not None:
        with PartitionedWriter(data_dir, product_ids, contract_product_ids, partitions) as out:
            for k, part in enumerate(split_tables(tables, partitions)):
                out.write(k, part)
            out.commit()
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=data_dir))
    try:
        names = {**TABLE_FILES, **OPTIONAL_TABLE_FILES}
        _write_files(tables, product_ids, {key: staging / name for key, name in names.items()})
        _move_into_place(staging, data_dir, partitioned=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _validate(
    tables: Tables, product_ids: list[str], contract_product_ids: Collection[str] | None
) -> None:
    if contract_product_ids is None:
        validate_contracts(tables.contracts, product_ids, "a holdable product of the catalogue")
    else:
        validate_contracts(tables.contracts, contract_product_ids)


def _write_files(tables: Tables, product_ids: list[str], paths: dict[str, Path]) -> None:
    import pyarrow.parquet as pq

    schemas = {
        "customers": CUSTOMER_SCHEMA,
        "holdings": holdings_schema(product_ids),
        "behaviour": BEHAVIOUR_SCHEMA,
        "contracts": CONTRACT_SCHEMA,
    }
    for name in ALL_TABLES:
        pq.write_table(_to_arrow(getattr(tables, name), schemas[name]), paths[name])


def _move_into_place(staging: Path, data_dir: Path, *, partitioned: bool) -> None:
    """Replace the set in ``data_dir`` by the staged one: the old manifest goes first (a
    reader then no longer takes the folder for a partitioned set), the new one last."""
    trash = Path(tempfile.mkdtemp(prefix=".old-", dir=data_dir))
    try:
        old_manifest = data_dir / PARTITION_MANIFEST
        if old_manifest.exists():
            os.replace(old_manifest, trash / PARTITION_MANIFEST)
        for key in ALL_TABLES:
            single = data_dir / {**TABLE_FILES, **OPTIONAL_TABLE_FILES}[key]
            folder = data_dir / key
            if partitioned:
                if folder.exists():
                    os.replace(folder, trash / key)
                os.replace(staging / key, folder)
                if single.exists():
                    os.replace(single, trash / single.name)
            else:
                os.replace(staging / single.name, single)
                if folder.exists():
                    os.replace(folder, trash / key)
        if partitioned:
            os.replace(staging / PARTITION_MANIFEST, data_dir / PARTITION_MANIFEST)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _frame(table: pa.Table, key: str) -> pd.DataFrame:
    frame = table.to_pandas()
    dates = CONTRACT_DATES if key == "contracts" else DATE_COLUMNS
    for col in frame.columns:
        if col in dates:
            frame[col] = pd.to_datetime(frame[col])
    return with_optional_columns(frame) if key == "customers" else frame


def _read_files(paths: dict[str, list[Path]]) -> Tables:
    import pyarrow.parquet as pq

    frames: dict[str, pd.DataFrame] = {}
    for key, files in paths.items():
        present = [f for f in files if f.exists()]
        if not present:
            continue  # only the optional contracts table may be absent (checked by the layout)
        table = pa.concat_tables([pq.read_table(f) for f in present], promote_options="default")
        frames[key] = _frame(table, key)
    return Tables(**frames)


def _partition_paths(data_dir: Path, partitions: range) -> dict[str, list[Path]]:
    return {key: [data_dir / key / PART_FILE.format(k) for k in partitions] for key in ALL_TABLES}


def read_tables(data_dir: Path) -> Tables:
    """Read the whole table set written by :func:`write_tables`, in either layout.

    A partitioned set comes back as its partitions one after the other; prefer
    :func:`read_partition` for anything that need not see every customer at once.
    """
    layout = table_layout(data_dir)
    if layout.partitioned:
        return _read_files(_partition_paths(data_dir, range(layout.partitions)))
    names = {**TABLE_FILES, **OPTIONAL_TABLE_FILES}
    return _read_files({key: [data_dir / name] for key, name in names.items()})


def read_partition(data_dir: Path, partition: int) -> Tables:
    """The customers of one partition with all their rows of every table.

    A single-file set is one partition (0): the whole set.
    """
    layout = table_layout(data_dir)
    if not 0 <= partition < layout.partitions:
        raise ValueError(
            f"partition {partition} does not exist in {data_dir} ({layout.partitions} partitions)"
        )
    if not layout.partitioned:
        return read_tables(data_dir)
    return _read_files(_partition_paths(data_dir, range(partition, partition + 1)))


def iter_partitions(data_dir: Path) -> Iterator[tuple[int, Tables]]:
    """``(partition, tables)`` for every partition in turn, one in memory at a time."""
    for k in range(table_layout(data_dir).partitions):
        yield k, read_partition(data_dir, k)


def latest_snapshot(data_dir: Path) -> pd.Timestamp | None:
    """The latest holdings month of the set (reads that one column only); None when empty."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    layout = table_layout(data_dir)
    files = (
        _partition_paths(data_dir, range(layout.partitions))["holdings"]
        if layout.partitioned
        else [data_dir / TABLE_FILES["holdings"]]
    )
    latest = None
    for path in files:
        value = pc.max(pq.read_table(path, columns=["month"])["month"]).as_py()
        if value is not None and (latest is None or value > latest):
            latest = value
    return None if latest is None else pd.Timestamp(latest)


def read_columns(data_dir: Path, table: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of one table of the whole set (e.g. to draw a sample of customers)."""
    import pyarrow.parquet as pq

    layout = table_layout(data_dir)
    names = {**TABLE_FILES, **OPTIONAL_TABLE_FILES}
    files = (
        _partition_paths(data_dir, range(layout.partitions))[table]
        if layout.partitioned
        else [data_dir / names[table]]
    )
    parts = [pq.read_table(f, columns=columns) for f in files if f.exists()]
    return _frame(pa.concat_tables(parts), table)


def restrict(tables: Tables, customer_ids: Collection[str]) -> Tables:
    """The rows of ``tables`` that belong to ``customer_ids``."""
    wanted = pd.Index(list(customer_ids), dtype=object)

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        mask = frame["customer_id"].astype(str).isin(wanted)
        return frame[mask.to_numpy()].reset_index(drop=True)

    return Tables(**{name: keep(getattr(tables, name)) for name in ALL_TABLES})
