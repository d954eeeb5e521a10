"""Customer partitions: a stable hash, and table sets written and read one partition at a time."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from core.catalogue import Catalogue
from core.partitions import partition_count, partition_of, partitions_of
from core.tables import (
    ALL_TABLES,
    PARTITION_MANIFEST,
    TABLE_FILES,
    ContractsError,
    PartitionedWriter,
    Tables,
    contract_products,
    iter_partitions,
    latest_snapshot,
    read_partition,
    read_tables,
    split_tables,
    table_layout,
    write_tables,
)
from features.synthetic import generate_bank

END = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(1500, 6, 11, catalogue, END)


def _ids(catalogue: Catalogue) -> list[str]:
    return [p.id for p in catalogue.holdable]


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    key = {"holdings": ["customer_id", "month"], "behaviour": ["customer_id", "month"]}
    by = key.get(table, ["contract_id"] if table == "contracts" else ["customer_id"])
    return frame.sort_values(by).reset_index(drop=True)


def test_the_hash_is_stable_across_versions_and_processes() -> None:
    # Golden values: a change here moves every customer of every bank to another partition.
    assert [partition_of(c, 8) for c in ("C0000001", "C0000002", "S0004026", "é")] == [7, 3, 3, 4]
    assert partition_of("C0000001", 1_000_003) == 165_926


def test_the_vectorised_hash_equals_the_reference() -> None:
    ids = [f"C{i:07d}" for i in range(3000)] + ["", "é", "Zürich-9", "x" * 40, "12345"]
    for partitions in (1, 2, 7, 64):
        expected = [partition_of(c, partitions) for c in ids]
        assert partitions_of(np.array(ids, dtype=object), partitions).tolist() == expected
    spread = np.bincount(partitions_of(ids[:3000], 4), minlength=4)
    assert spread.min() > 600  # 750 expected per partition
    assert partitions_of([], 3).shape == (0,)


def test_partition_count_follows_the_setting() -> None:
    assert partition_count(1_000_000, 200_000) == 5
    assert partition_count(1_000_001, 200_000) == 6
    assert partition_count(10, 200_000) == 1
    with pytest.raises(ValueError, match="at least 1"):
        partition_count(10, 0)
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("C1", 0)


def test_a_partitioned_set_reads_back_as_the_whole_bank(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    write_tables(bank, tmp_path, _ids(catalogue), contract_products(catalogue), partitions=3)
    layout = table_layout(tmp_path)
    assert layout.partitioned and layout.partitions == 3 and layout.customers == 1500
    for table in ALL_TABLES:
        files = sorted(p.name for p in (tmp_path / table).iterdir())
        assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
        # Each table folder is one Parquet dataset for any reader (Spark, DuckDB, pyarrow).
        assert ds.dataset(tmp_path / table).count_rows() == len(getattr(bank, table))
    whole = read_tables(tmp_path)
    single = tmp_path / "single"
    write_tables(bank, single, _ids(catalogue), contract_products(catalogue))
    reference = read_tables(single)
    for table in ALL_TABLES:
        expected, got = getattr(reference, table), getattr(whole, table)
        assert len(got) == len(getattr(bank, table))
        pd.testing.assert_frame_equal(_sorted(got, table), _sorted(expected, table))
    assert latest_snapshot(tmp_path) == pd.Timestamp(END)


def test_a_partition_holds_its_customers_with_all_their_rows(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    write_tables(bank, tmp_path, _ids(catalogue), contract_products(catalogue), partitions=4)
    seen: list[str] = []
    for k, part in iter_partitions(tmp_path):
        ids = part.customers["customer_id"].astype(str)
        assert (partitions_of(ids.to_numpy(dtype=object), 4) == k).all()
        for table in ("holdings", "behaviour", "contracts"):
            frame = getattr(part, table)
            everyone = getattr(bank, table)
            mine = everyone[everyone["customer_id"].isin(set(ids))]
            assert len(frame) == len(mine) and set(frame["customer_id"]) <= set(ids)
        seen += ids.tolist()
    assert sorted(seen) == sorted(bank.customers["customer_id"].astype(str))
    with pytest.raises(ValueError, match="partition 4 does not exist"):
        read_partition(tmp_path, 4)


def test_split_keeps_every_row_once(bank: Tables) -> None:
    parts = split_tables(bank, 5)
    for table in ALL_TABLES:
        assert sum(len(getattr(p, table)) for p in parts) == len(getattr(bank, table))


def test_the_single_file_layout_is_one_partition(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    write_tables(bank, tmp_path, _ids(catalogue), contract_products(catalogue))
    assert table_layout(tmp_path).partitions == 1 and not table_layout(tmp_path).partitioned
    only = read_partition(tmp_path, 0)
    assert len(only.customers) == len(bank.customers)


def test_rewriting_switches_layout_without_stale_files(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    ids, contracts = _ids(catalogue), contract_products(catalogue)
    write_tables(bank, tmp_path, ids, contracts)
    write_tables(bank, tmp_path, ids, contracts, partitions=2)
    assert not any((tmp_path / name).exists() for name in TABLE_FILES.values())
    assert len(read_tables(tmp_path).customers) == 1500
    write_tables(bank, tmp_path, ids, contracts, partitions=3)
    assert table_layout(tmp_path).partitions == 3
    assert len(list((tmp_path / "customers").iterdir())) == 3
    write_tables(bank, tmp_path, ids, contracts)
    assert not (tmp_path / PARTITION_MANIFEST).exists() and not (tmp_path / "customers").exists()
    assert len(read_tables(tmp_path).customers) == 1500
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_failing_partition_leaves_the_previous_set(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    ids, contracts = _ids(catalogue), contract_products(catalogue)
    write_tables(bank, tmp_path, ids, contracts, partitions=2)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    parts = split_tables(bank, 3)
    broken = parts[2].contracts.copy()
    broken.loc[0, "amount"] = -1.0
    parts[2].contracts = broken
    bad_row = pytest.raises(ContractsError, match=r"partition 2: contracts row 1 .* negative")
    with bad_row, PartitionedWriter(tmp_path, ids, contracts, 3) as out:
        for k, part in enumerate(parts):
            out.write(k, part)
        out.commit()
    missing = pytest.raises(ValueError, match="partitions not written: 2")
    with missing, PartitionedWriter(tmp_path, ids, contracts, 3) as out:
        out.write(0, parts[0])
        out.write(1, parts[1])
        out.commit()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert table_layout(tmp_path).partitions == 2
