"""The contracts table: optional in a set, validated on write, nothing half-written."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import (
    CONTRACT_SCHEMA,
    TABLE_FILES,
    ContractsError,
    contract_products,
    read_tables,
    write_tables,
)
from tests.support.tables import customer, holding, make_tables


def _contract(contract_id: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "contract_id": contract_id,
        "customer_id": "C1",
        "product": "short_term_deposit",
        "opened_on": date(2025, 1, 10),
        "maturity_date": date(2025, 7, 10),
        "amount": 5_000.0,
        "closed_on": None,
        "outcome": None,
    }
    row.update(fields)
    return row


def _tables(catalogue: Catalogue, *contracts: dict[str, object]):  # type: ignore[no-untyped-def]
    ids = [p.id for p in catalogue.holdable]
    tables = make_tables(
        ids, [customer("C1")], [holding("C1", date(2025, 1, 31), "short_term_deposit")]
    )
    frame = pd.DataFrame(list(contracts), columns=CONTRACT_SCHEMA.names)
    for column in ("opened_on", "maturity_date", "closed_on"):
        frame[column] = pd.to_datetime(frame[column])
    tables.contracts = frame
    return tables, ids


def test_contract_products_are_the_catalogue_deposits_and_loans(catalogue: Catalogue) -> None:
    products = contract_products(catalogue)
    assert {"short_term_deposit", "medium_term_deposit", "long_term_deposit", "loans"} <= products
    assert "mortgage" in products
    assert not {"current_account", "funds", "deposit_rate_bonus"} & products


def test_a_set_without_contracts_reads_them_as_empty(catalogue: Catalogue, tmp_path: Path) -> None:
    tables, ids = _tables(catalogue)
    write_tables(tables, tmp_path, ids, contract_products(catalogue))
    (tmp_path / "contracts.parquet").unlink()  # a set written before contracts existed
    back = read_tables(tmp_path)
    assert back.contracts.empty
    assert list(back.contracts.columns) == CONTRACT_SCHEMA.names


def test_contracts_round_trip(catalogue: Catalogue, tmp_path: Path) -> None:
    tables, ids = _tables(
        catalogue,
        _contract("K1"),
        _contract(
            "K2",
            product="loans",
            maturity_date=None,
            closed_on=date(2025, 3, 1),
            outcome="repaid",
        ),
    )
    write_tables(tables, tmp_path, ids, contract_products(catalogue))
    back = read_tables(tmp_path).contracts
    assert back["contract_id"].tolist() == ["K1", "K2"]
    assert back["maturity_date"].iloc[0] == pd.Timestamp("2025-07-10")
    assert pd.isna(back["maturity_date"].iloc[1])
    assert pd.isna(back["outcome"].iloc[0]) and back["outcome"].iloc[1] == "repaid"
    assert back["amount"].tolist() == [5_000.0, 5_000.0]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"maturity_date": date(2025, 1, 1)},
            "contracts row 2 (contract_id 'K2'): maturity_date 2025-01-01 is not after "
            "opened_on 2025-01-10",
        ),
        ({"amount": -1.0}, "contracts row 2 (contract_id 'K2'): amount -1.0 is negative"),
        (
            {"product": "funds"},
            "contracts row 2 (contract_id 'K2'): product 'funds' is not a deposit or loan "
            "product of the catalogue",
        ),
        ({"contract_id": "K1"}, "contracts row 2 (contract_id 'K1'): contract_id is a duplicate"),
        (
            {"outcome": "vanished"},
            "contracts row 2 (contract_id 'K2'): outcome 'vanished' is not one of",
        ),
    ],
)
def test_a_bad_contract_names_its_row_and_nothing_is_written(
    catalogue: Catalogue, tmp_path: Path, bad: dict[str, object], message: str
) -> None:
    good, ids = _tables(catalogue, _contract("K1"))
    write_tables(good, tmp_path, ids, contract_products(catalogue))
    before = {name: (tmp_path / name).read_bytes() for name in TABLE_FILES.values()}
    before["contracts.parquet"] = (tmp_path / "contracts.parquet").read_bytes()
    second = {**_contract("K2"), **bad}
    broken, _ = _tables(catalogue, _contract("K1"), second, _contract("K3"))
    broken.customers = broken.customers.assign(income=123.0)  # would change customers too
    with pytest.raises(ContractsError) as caught:
        write_tables(broken, tmp_path, ids, contract_products(catalogue))
    assert message in str(caught.value)
    after = {name: (tmp_path / name).read_bytes() for name in before}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no staging left


def test_without_the_contract_products_a_product_must_be_holdable(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    tables, ids = _tables(catalogue, _contract("K1", product="deposit_rate_bonus"))
    with pytest.raises(ContractsError, match="'deposit_rate_bonus' is not a holdable product"):
        write_tables(tables, tmp_path, ids)
    assert not (tmp_path / "contracts.parquet").exists()
    ok, _ = _tables(catalogue, _contract("K1", product="loans"))
    write_tables(ok, tmp_path, ids)
    assert read_tables(tmp_path).contracts["product"].tolist() == ["loans"]
