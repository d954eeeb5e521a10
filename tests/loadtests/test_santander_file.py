"""The train_ver2.csv-format file built from the synthetic bank imports cleanly; at the
competition's size (13.6 M rows) only with ``pytest -m slow``."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.tables import read_tables, table_layout
from features.santander import import_santander_partitioned
from loadtests.santander_file import HEADER, write_file


def _build_and_import(catalogue: Catalogue, tmp_path: Path, customers: int) -> None:
    path = tmp_path / "train_synthetic.csv"
    rows = write_file(path, customers, 12, 7, date(2016, 5, 31), catalogue, partitions=3)
    header = pd.read_csv(path, nrows=0).columns.tolist()
    assert header[: len(HEADER)] == HEADER and len(header) == 48
    result = import_santander_partitioned(path, catalogue, tmp_path / "data", 200_000)
    assert result.rows_read == rows
    # Only customers without a birth date are rejected ("missing age"), as in the real file.
    assert set(result.rejections) <= {"missing age"}
    assert result.customers == table_layout(tmp_path / "data").customers
    print(f"{rows:,} rows imported at {result.rows_per_second:,.0f} rows/s")


def test_a_small_synthetic_file_imports(catalogue: Catalogue, tmp_path: Path) -> None:
    _build_and_import(catalogue, tmp_path, 2_000)
    customers = read_tables(tmp_path / "data").customers
    assert customers["customer_id"].str.fullmatch(r"\d+").all()


@pytest.mark.slow  # ~13.6 M rows: minutes and a few GB of disk; pytest -m slow
def test_a_file_of_the_competition_size_imports(catalogue: Catalogue, tmp_path: Path) -> None:
    _build_and_import(
        catalogue, tmp_path, int(os.environ.get("NBO_BIG_SANTANDER_CUSTOMERS", "1140000"))
    )
