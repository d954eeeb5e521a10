"""What the canonical tables hold: their columns, the :class:`Tables` frames, the contract rules.

Three tables, and an optional fourth (how they lie in a folder: ``core/table_layouts.py``):

``customers``  one row per customer (master data)
``holdings``   one row per customer and month-end snapshot; one 0/1 column per holdable
               catalogue product id (``Catalogue.holdable``)
``behaviour``  one row per customer and month-end: logins, balance (assets under
               management), inflow, outflow, active flag (nullable where unknown)
``contracts``  optional: one row per term deposit or loan

``month`` is the snapshot date as published (Santander uses the 28th; the generator the
last day of the month). Point-in-time code uses only rows with ``month <= as_of``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
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
DATE_COLUMNS = ("birth_date", "joined_on", "left_on", "risk_assessed_on", "month")
ALL_TABLES = ("customers", "holdings", "behaviour", "contracts")
"""The tables of a set, in the order they are written and read (the fields of :class:`Tables`)."""


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


def validate_tables(
    tables: Tables, product_ids: list[str], contract_product_ids: Collection[str] | None
) -> None:
    """The check a set passes before any of it is written: its contracts name
    ``contract_product_ids`` (without them: any of ``product_ids``); see
    :func:`validate_contracts`."""
    if contract_product_ids is None:
        validate_contracts(tables.contracts, product_ids, "a holdable product of the catalogue")
    else:
        validate_contracts(tables.contracts, contract_product_ids)


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


def with_optional_columns(customers: pd.DataFrame) -> pd.DataFrame:
    """``customers`` with every optional master column present (unknown where absent)."""
    absent = [c for c in OPTIONAL_CUSTOMER_COLUMNS if c not in customers.columns]
    if not absent:
        return customers
    return customers.assign(
        **{c: pd.Series(None, index=customers.index, dtype=object) for c in absent}
    )


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as an Arrow table of ``schema`` (raises naming the columns it lacks)."""
    if schema is CUSTOMER_SCHEMA:
        frame = with_optional_columns(frame)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"table is missing columns: {', '.join(missing)}")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def to_frame(table: pa.Table, key: str) -> pd.DataFrame:
    """The Arrow table of table ``key`` (one of ``ALL_TABLES``) as its :class:`Tables` frame."""
    frame = table.to_pandas()
    dates = CONTRACT_DATES if key == "contracts" else DATE_COLUMNS
    for col in frame.columns:
        if col in dates:
            frame[col] = pd.to_datetime(frame[col])
    return with_optional_columns(frame) if key == "customers" else frame


def restrict(tables: Tables, customer_ids: Collection[str]) -> Tables:
    """The rows of ``tables`` that belong to ``customer_ids``."""
    wanted = pd.Index(list(customer_ids), dtype=object)

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        mask = frame["customer_id"].astype(str).isin(wanted)
        return frame[mask.to_numpy()].reset_index(drop=True)

    return Tables(**{name: keep(getattr(tables, name)) for name in ALL_TABLES})
