"""How a table set lies in a folder: the single-file and the partitioned Parquet layouts.

single file   ``customers.parquet``, ``holdings.parquet``, ``behaviour.parquet``,
              ``contracts.parquet``
partitioned   ``customers/part-00000.parquet`` ... one file per partition and table, and
              ``partitions.json`` (the manifest: partition count, hash, customers). A
              customer's rows of every table are in the file of its partition
              (``core/partitions.py``). Each table folder is a plain Parquet dataset (Spark,
              DuckDB and pyarrow read it as one table).

A table set is written to a staging folder and moved into place only after every table
(and every partition) is complete, the manifest last, so a failed import never leaves a
partial set. The public reading and writing API is ``core/tables.py``; what the tables
hold is ``core/table_schema.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from core.table_schema import (
    ALL_TABLES,
    BEHAVIOUR_SCHEMA,
    CONTRACT_SCHEMA,
    CUSTOMER_SCHEMA,
    ContractsError,
    Tables,
    holdings_schema,
    to_arrow,
    to_frame,
    validate_tables,
)

TABLE_FILES = {
    "customers": "customers.parquet",
    "holdings": "holdings.parquet",
    "behaviour": "behaviour.parquet",
}
OPTIONAL_TABLE_FILES = {"contracts": "contracts.parquet"}
"""Tables a set may lack: read as empty when their file is absent."""
SINGLE_FILES = {**TABLE_FILES, **OPTIONAL_TABLE_FILES}
"""Every table's file in the single-file layout."""
PARTITION_MANIFEST = "partitions.json"
"""The partitioned layout's manifest; written last, so its presence marks a complete set."""
PART_FILE = "part-{:05d}.parquet"


class TablesMissingError(FileNotFoundError):
    """The data folder holds no complete table set."""


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


def partition_files(data_dir: Path, partitions: range) -> dict[str, list[Path]]:
    """Every table's files of ``partitions`` in the partitioned layout, by table."""
    return {key: [data_dir / key / PART_FILE.format(k) for k in partitions] for key in ALL_TABLES}


def set_files(data_dir: Path, layout: TableLayout) -> dict[str, list[Path]]:
    """Every table's files of the whole set in ``data_dir`` (laid out as ``layout``), by table."""
    if layout.partitioned:
        return partition_files(data_dir, range(layout.partitions))
    return {key: [data_dir / name] for key, name in SINGLE_FILES.items()}


def read_files(paths: dict[str, list[Path]]) -> Tables:
    """The tables stored in ``paths`` (by table), each table's files read as one frame."""
    import pyarrow.parquet as pq

    frames: dict[str, pd.DataFrame] = {}
    for key, files in paths.items():
        present = [f for f in files if f.exists()]
        if not present:
            continue  # only the optional contracts table may be absent (checked by the layout)
        table = pa.concat_tables([pq.read_table(f) for f in present], promote_options="default")
        frames[key] = to_frame(table, key)
    return Tables(**frames)


def write_single_files(tables: Tables, data_dir: Path, product_ids: list[str]) -> None:
    """Write ``tables`` (validated) in the single-file layout, atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=data_dir))
    try:
        _write_files(
            tables, product_ids, {key: staging / name for key, name in SINGLE_FILES.items()}
        )
        _move_into_place(staging, data_dir, partitioned=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
            validate_tables(tables, self.product_ids, self.contract_product_ids)
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


def _write_files(tables: Tables, product_ids: list[str], paths: dict[str, Path]) -> None:
    import pyarrow.parquet as pq

    schemas = {
        "customers": CUSTOMER_SCHEMA,
        "holdings": holdings_schema(product_ids),
        "behaviour": BEHAVIOUR_SCHEMA,
        "contracts": CONTRACT_SCHEMA,
    }
    for name in ALL_TABLES:
        pq.write_table(to_arrow(getattr(tables, name), schemas[name]), paths[name])


def _move_into_place(staging: Path, data_dir: Path, *, partitioned: bool) -> None:
    """Replace the set in ``data_dir`` by the staged one: the old manifest goes first (a
    reader then no longer takes the folder for a partitioned set), the new one last."""
    trash = Path(tempfile.mkdtemp(prefix=".old-", dir=data_dir))
    try:
        old_manifest = data_dir / PARTITION_MANIFEST
        if old_manifest.exists():
            os.replace(old_manifest, trash / PARTITION_MANIFEST)
        for key in ALL_TABLES:
            single = data_dir / SINGLE_FILES[key]
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
