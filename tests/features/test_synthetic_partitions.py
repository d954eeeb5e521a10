"""The synthetic bank made one partition at a time: deterministic for (customers, seed,
partition count), each customer in its hash partition, one partition in memory at a time."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.data import app as data_app
from core.catalogue import Catalogue
from core.partitions import partitions_of
from core.tables import Tables, read_partition, read_tables, table_layout
from features.synthetic import generate_bank, generate_partitions, partition_numbers

END = date(2025, 12, 31)


def _bank(catalogue: Catalogue, seed: int, partitions: int) -> list[tuple[int, Tables]]:
    return list(generate_partitions(1200, 5, seed, catalogue, END, partitions))


def _same(left: list[tuple[int, Tables]], right: list[tuple[int, Tables]]) -> bool:
    return [k for k, _ in left] == [k for k, _ in right] and all(
        getattr(a, name).equals(getattr(b, name))
        for (_, a), (_, b) in zip(left, right, strict=True)
        for name in ("customers", "holdings", "behaviour", "contracts")
    )


def test_each_partition_holds_the_customers_its_ids_hash_to(catalogue: Catalogue) -> None:
    parts = _bank(catalogue, 7, 3)
    assert [k for k, _ in parts] == [0, 1, 2]
    ids: list[str] = []
    for k, tables in parts:
        own = tables.customers["customer_id"].to_numpy(dtype=object)
        assert (partitions_of(own, 3) == k).all()
        for name in ("holdings", "behaviour", "contracts"):
            assert set(getattr(tables, name)["customer_id"]) <= set(own)
        ids += list(own)
    assert sorted(ids) == [f"S{n:07d}" for n in range(1, 1201)]
    contracts = pd.concat([t.contracts for _, t in parts])
    assert len(contracts) > 0 and contracts["contract_id"].is_unique


def test_the_bank_is_deterministic_for_seed_and_partition_count(catalogue: Catalogue) -> None:
    assert _same(_bank(catalogue, 7, 3), _bank(catalogue, 7, 3))
    assert not _same(_bank(catalogue, 8, 3), _bank(catalogue, 7, 3))
    assert [len(n) for n in partition_numbers(1200, 4)] != [
        len(n) for n in partition_numbers(1200, 3)
    ]


def test_one_partition_is_the_bank_of_generate_bank(catalogue: Catalogue) -> None:
    [(k, only)] = _bank(catalogue, 7, 1)
    whole = generate_bank(1200, 5, 7, catalogue, END)
    assert k == 0 and _same([(0, only)], [(0, whole)])


def test_a_partition_without_customers_is_written_empty(
    catalogue: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    monkeypatch.setenv("NBO_PARTITION_CUSTOMERS", "1")  # 3 customers, 3 partitions
    out = tmp_path / "data"
    args = ["data", "generate", "--customers", "3", "--months", "3", "--seed", "2"]
    result = CliRunner().invoke(root, [*args, "--end-month", "2025-06-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sizes = [len(read_partition(out, k).customers) for k in range(3)]
    assert sum(sizes) == 3 and 0 in sizes  # the 3 ids hash to 2 of the 3 partitions


def test_generate_command_writes_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    monkeypatch.setenv("NBO_PARTITION_CUSTOMERS", "100")
    out = tmp_path / "data"
    args = ["data", "generate", "--customers", "300", "--months", "4", "--seed", "5"]
    result = CliRunner().invoke(root, [*args, "--end-month", "2025-06-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "300 customers" in result.output and "3 partition(s)" in result.output
    assert table_layout(out).partitions == 3 and table_layout(out).customers == 300
    assert len(read_tables(out).customers) == 300
