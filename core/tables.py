"""The project's canonical tables: what every importer writes and every job reads.

Three Parquet tables live in one folder (``Settings.data_dir``):

``customers``  one row per customer (master data)
``holdings``   one row per customer and month-end snapshot; one 0/1 column per holdable
               catalogue product id (``Catalogue.holdable``)
``behaviour``  one row per customer and month-end: logins, balance (assets under
               management), inflow, outflow, active flag (nullable where unknown)

``month`` is the snapshot date as published (Santander uses the 28th; the generator the
last day of the month). Point-in-time code uses only rows with ``month <= as_of``.
A table set is written to a temporary folder and moved into place file by file only
after every table is complete, so a failed import never leaves a partial set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

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


def holdings_schema(product_ids: list[str]) -> pa.Schema:
    """Schema of the holdings table for a catalogue's holdable product ids."""
    fields = [pa.field("customer_id", pa.string()), pa.field("month", pa.date32())]
    fields += [pa.field(pid, pa.int8()) for pid in product_ids]
    return pa.schema(fields)


@dataclass
class Tables:
    """The three canonical tables as pandas frames (dates as ``datetime64[ns]``)."""

    customers: pd.DataFrame
    holdings: pd.DataFrame
    behaviour: pd.DataFrame


TABLE_FILES = {
    "customers": "customers.parquet",
    "holdings": "holdings.parquet",
    "behaviour": "behaviour.parquet",
}


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


def write_tables(tables: Tables, data_dir: Path, product_ids: list[str]) -> None:
    """Write all three tables atomically (temporary folder, then one rename per file)."""
    import pyarrow.parquet as pq

    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=data_dir))
    try:
        pq.write_table(
            _to_arrow(tables.customers, CUSTOMER_SCHEMA), staging / TABLE_FILES["customers"]
        )
        pq.write_table(
            _to_arrow(tables.holdings, holdings_schema(product_ids)),
            staging / TABLE_FILES["holdings"],
        )
        pq.write_table(
            _to_arrow(tables.behaviour, BEHAVIOUR_SCHEMA), staging / TABLE_FILES["behaviour"]
        )
        for name in TABLE_FILES.values():
            os.replace(staging / name, data_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_tables(data_dir: Path) -> Tables:
    """Read the table set written by :func:`write_tables`."""
    paths = {key: data_dir / name for key, name in TABLE_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise TablesMissingError(
            f"no canonical tables in {data_dir} (missing {', '.join(missing)}); "
            "run `nbo data generate` or `nbo data import-santander` first"
        )
    frames = {}
    for key, path in paths.items():
        frame = pd.read_parquet(path)
        for col in frame.columns:
            if col in ("birth_date", "joined_on", "left_on", "risk_assessed_on", "month"):
                frame[col] = pd.to_datetime(frame[col])
        frames[key] = with_optional_columns(frame) if key == "customers" else frame
    return Tables(**frames)
