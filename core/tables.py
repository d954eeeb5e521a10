"""The project's canonical tables: what every importer writes and every job reads.

Three Parquet tables, and an optional fourth (``contracts``), live in one folder
(``Settings.data_dir``); what they hold is ``core/table_schema.py``. Two layouts, both read
by :func:`read_tables` (``core/table_layouts.py``): one file per table, or partitioned, one
file per table and customer hash partition (``core/partitions.py``), so
:func:`read_partition` reads a partition's customers with all their rows and a job's
memory is bounded by the partition size.

This module is the reading and writing API; ``__all__`` re-exports the schema and layout
names, so callers import every table name from here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from core.table_layouts import (
    OPTIONAL_TABLE_FILES,
    PART_FILE,
    PARTITION_MANIFEST,
    TABLE_FILES,
    PartitionedWriter,
    TableLayout,
    TablesMissingError,
    partition_files,
    read_files,
    set_files,
    table_layout,
    write_single_files,
)
from core.table_schema import (
    ALL_TABLES,
    BEHAVIOUR_SCHEMA,
    CHANNELS,
    CONTRACT_CATEGORIES,
    CONTRACT_DATES,
    CONTRACT_OUTCOMES,
    CONTRACT_SCHEMA,
    CUSTOMER_SCHEMA,
    DATE_COLUMNS,
    HOLDINGS_KEY_COLUMNS,
    OPTIONAL_CUSTOMER_COLUMNS,
    TIERS,
    ContractsError,
    Tables,
    contract_products,
    empty_contracts,
    empty_tables,
    holdings_schema,
    restrict,
    to_frame,
    validate_contracts,
    validate_tables,
    with_optional_columns,
)

__all__ = [
    "ALL_TABLES",
    "BEHAVIOUR_SCHEMA",
    "CHANNELS",
    "CONTRACT_CATEGORIES",
    "CONTRACT_DATES",
    "CONTRACT_OUTCOMES",
    "CONTRACT_SCHEMA",
    "CUSTOMER_SCHEMA",
    "DATE_COLUMNS",
    "HOLDINGS_KEY_COLUMNS",
    "OPTIONAL_CUSTOMER_COLUMNS",
    "OPTIONAL_TABLE_FILES",
    "PARTITION_MANIFEST",
    "PART_FILE",
    "TABLE_FILES",
    "TIERS",
    "ContractsError",
    "PartitionedWriter",
    "TableLayout",
    "Tables",
    "TablesMissingError",
    "contract_products",
    "empty_contracts",
    "empty_tables",
    "holdings_schema",
    "iter_partitions",
    "latest_snapshot",
    "read_columns",
    "read_partition",
    "read_tables",
    "restrict",
    "split_tables",
    "table_layout",
    "validate_contracts",
    "with_optional_columns",
    "write_tables",
]


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
    validate_tables(tables, product_ids, contract_product_ids)
    if partitions is None:
        write_single_files(tables, data_dir, product_ids)
        return
    with PartitionedWriter(data_dir, product_ids, contract_product_ids, partitions) as out:
        for k, part in enumerate(split_tables(tables, partitions)):
            out.write(k, part)
        out.commit()


def read_tables(data_dir: Path) -> Tables:
    """Read the whole table set written by :func:`write_tables`, in either layout.

    A partitioned set comes back as its partitions one after the other; prefer
    :func:`read_partition` for anything that need not see every customer at once.
    """
    return read_files(set_files(data_dir, table_layout(data_dir)))


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
    return read_files(partition_files(data_dir, range(partition, partition + 1)))


def iter_partitions(data_dir: Path) -> Iterator[tuple[int, Tables]]:
    """``(partition, tables)`` for every partition in turn, one in memory at a time."""
    for k in range(table_layout(data_dir).partitions):
        yield k, read_partition(data_dir, k)


def latest_snapshot(data_dir: Path) -> pd.Timestamp | None:
    """The latest holdings month of the set (reads that one column only); None when empty."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    latest = None
    for path in set_files(data_dir, table_layout(data_dir))["holdings"]:
        value = pc.max(pq.read_table(path, columns=["month"])["month"]).as_py()
        if value is not None and (latest is None or value > latest):
            latest = value
    return None if latest is None else pd.Timestamp(latest)


def read_columns(data_dir: Path, table: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of one table of the whole set (e.g. to draw a sample of customers)."""
    import pyarrow.parquet as pq

    files = set_files(data_dir, table_layout(data_dir))[table]
    parts = [pq.read_table(f, columns=columns) for f in files if f.exists()]
    return to_frame(pa.concat_tables(parts), table)
