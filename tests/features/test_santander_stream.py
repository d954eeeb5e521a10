"""The Santander import streamed into partitions: the same tables as the in-memory import,
a corrupt row anywhere fails the whole import by file, line and column, nothing written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.data import app as data_app
from core.catalogue import Catalogue
from core.tables import ALL_TABLES, contract_products, read_tables, table_layout, write_tables
from features.errors import DataFormatError
from features.santander import import_santander, import_santander_partitioned

RAW = "santander/train_ver2_first10k_rows_2015-01.csv"
PANEL = "santander/panel_2015-12_to_2016-05.csv.gz"


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    key = [c for c in ("customer_id", "month") if c in frame.columns]
    return frame.sort_values(key).reset_index(drop=True)


def test_streamed_partitions_hold_the_tables_of_the_in_memory_import(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    whole = import_santander(shared_data / PANEL, catalogue)
    messages: list[str] = []
    streamed = import_santander_partitioned(
        shared_data / PANEL,
        catalogue,
        tmp_path,
        customers_per_partition=4_000,
        progress=messages.append,
        chunk_rows=20_000,  # several chunks: duplicates and latest profiles cross them
    )
    assert streamed.partitions == table_layout(tmp_path).partitions > 1
    assert streamed.rows_read == whole.rows_read and streamed.months == whole.months
    assert streamed.rejections == whole.rejections and streamed.warnings == whole.warnings
    assert streamed.customers == len(whole.tables.customers)
    assert streamed.rows_per_second > 0
    assert any("rows/s" in m for m in messages) and messages[-1].startswith("writing partition")
    back = read_tables(tmp_path)
    ids = [p.id for p in catalogue.holdable]
    write_tables(whole.tables, tmp_path / "in-memory", ids, contract_products(catalogue))
    reference = read_tables(tmp_path / "in-memory")
    for name in ALL_TABLES:
        pd.testing.assert_frame_equal(
            _sorted(getattr(back, name)), _sorted(getattr(reference, name))
        )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no spill left


def test_a_duplicate_in_a_later_chunk_is_rejected_as_in_memory(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    lines = (shared_data / RAW).read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "dup.csv"
    path.write_text("".join([*lines, lines[5]]), encoding="utf-8")  # row 5 again, at the end
    whole = import_santander(path, catalogue)
    streamed = import_santander_partitioned(
        path, catalogue, tmp_path / "data", customers_per_partition=3_000, chunk_rows=4_000
    )
    assert streamed.rejections == whole.rejections
    assert streamed.rejections["duplicate customer and month"] == 1
    assert len(read_tables(tmp_path / "data").holdings) == len(whole.tables.holdings)


def test_a_corrupt_row_fails_the_import_by_line_and_column_and_writes_nothing(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    import_santander_partitioned(shared_data / RAW, catalogue, data, 3_000)
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    lines = (shared_data / RAW).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[9_000] = lines[9_000].rstrip("\n").rsplit(",", 1)[0] + "\n"  # one field short
    path = tmp_path / "corrupt.csv"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        import_santander_partitioned(path, catalogue, data, 3_000, chunk_rows=2_000)
    assert (info.value.path, info.value.line, info.value.column) == (path, 9_001, 48)
    assert str(info.value).startswith(f"{path}:9001:48: expected 48 fields, found 47")
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before

    root = typer.Typer()
    root.add_typer(data_app, name="data")
    result = CliRunner().invoke(root, ["data", "import-santander", str(path), "--out", str(data)])
    assert result.exit_code == 2
    flat = "".join(result.stderr.split())  # however the terminal wraps it
    assert "corrupt.csv:9001:48:expected48fields,found47" in flat
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before
    good = CliRunner().invoke(
        root, ["data", "import-santander", str(shared_data / RAW), "--out", str(data)]
    )
    assert good.exit_code == 0, good.output
    assert "rows/s" in good.output and "9,949 customers" in good.output
