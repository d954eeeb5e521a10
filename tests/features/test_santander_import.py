"""The Santander importer on the real Kaggle files and on malformed copies of the format."""

from __future__ import annotations

import csv
import gzip
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.data import app as data_app
from core.catalogue import Catalogue
from core.tables import Tables, read_tables, write_tables
from features.errors import DataFormatError
from features.santander import NO_CONTRACTS, SantanderImport, import_santander

RAW = "santander/train_ver2_first10k_rows_2015-01.csv"
PANEL = "santander/panel_2015-12_to_2016-05.csv.gz"


@pytest.fixture(scope="module")
def raw_import(shared_data: Path, catalogue: Catalogue) -> SantanderImport:
    return import_santander(shared_data / RAW, catalogue)


@pytest.fixture(scope="module")
def panel_import(shared_data: Path, catalogue: Catalogue) -> SantanderImport:
    return import_santander(shared_data / PANEL, catalogue)


def _raw_lines(shared_data: Path, count: int) -> list[str]:
    with open(shared_data / RAW, encoding="utf-8") as handle:
        return [next(handle) for _ in range(count)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


# -- the real files -----------------------------------------------------------------------------


def test_raw_file_rows_and_rejections(raw_import: SantanderImport) -> None:
    assert raw_import.rows_read == 9_999
    # 50 rows of this extract have no profile at all (age "NA", empty sex, segment, ...).
    assert raw_import.rejections == {"missing age": 50}
    assert raw_import.rows_rejected == 50
    assert raw_import.months == [date(2015, 1, 28)]
    tables = raw_import.tables
    assert len(tables.customers) == len(tables.holdings) == len(tables.behaviour) == 9_949


def test_raw_file_quirks_are_parsed(raw_import: SantanderImport, catalogue: Catalogue) -> None:
    customers = raw_import.tables.customers.set_index("customer_id")
    # First data row: 1375586, sexo H, age " 35", fecha_alta 2015-01-12, "MALAGA",
    # ind_actividad_cliente " 1", renta 87218.1, 02 - PARTICULARES, holds cco only.
    first = customers.loc["1375586"]
    assert first["birth_date"] == pd.Timestamp("1980-01-28")
    assert first["sex"] == "F"
    assert first["joined_on"] == pd.Timestamp("2015-01-12")
    assert first["region"] == "MALAGA"
    assert first["acquisition_channel"] == "KHL"  # canal_entrada, unchanged
    assert first["preferred_channel"] is None  # how they joined is not how to contact them
    assert first["income"] == pytest.approx(87218.1)
    assert (first["segment"], first["tier"]) == ("individuals", "mass")
    assert bool(first["resident"]) is True and bool(first["employee"]) is False
    assert pd.isna(first["risk_level"]) and pd.isna(first["risk_assessed_on"])
    # Quoted province names with a comma survive; empty renta is unknown income, not 0.
    assert "CORUÑA, A" in set(customers["region"])
    assert customers["income"].isna().sum() == 1_849
    assert customers["income"].min() > 0
    assert set(customers["sex"].dropna()) == {"F", "M"}
    held = raw_import.tables.holdings.set_index("customer_id").loc["1375586"]
    products = [p.id for p in catalogue.holdable]
    assert [pid for pid in products if held[pid] == 1] == ["current_account"]
    active = raw_import.tables.behaviour.set_index("customer_id").loc["1375586", "active"]
    assert bool(active) is True
    assert customers["tier"].value_counts()["private"] == 53  # every "01 - TOP"


def test_panel_shape_and_warnings(panel_import: SantanderImport) -> None:
    tables = panel_import.tables
    assert panel_import.rows_read == 82_578 and panel_import.rows_rejected == 0
    assert tables.customers["customer_id"].nunique() == 13_763
    assert len(panel_import.months) == 6
    assert panel_import.months[0] == date(2015, 12, 28)
    assert panel_import.months[-1] == date(2016, 5, 28)
    assert tables.holdings.groupby("month").size().eq(13_763).all()
    # The panel leaves 5,159 rows' product flags empty: read as "not held", and said so.
    assert panel_import.warnings["missing product flag ind_cco_fin_ult1 -> 0"] == 5_159


def test_panel_holdings_match_the_csv(
    shared_data: Path, panel_import: SantanderImport, catalogue: Catalogue
) -> None:
    # By hand: customer 15952 at 2015-12-28 holds cco, dela, reca and recibo.
    holdings = panel_import.tables.holdings.set_index(["customer_id", "month"])
    row = holdings.loc[("15952", pd.Timestamp("2015-12-28"))]
    held = sorted(pid for pid in row.index if row[pid] == 1)
    assert held == ["current_account", "direct_debit", "long_term_deposit", "taxes"]
    # And a few more, cell by cell against an independent read of the file.
    wanted = {"15952", "1170604", "1550586"}
    by_code = catalogue.by_santander_code
    checked = 0
    with gzip.open(shared_data / PANEL, "rt", encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            if record["ncodpers"] not in wanted:
                continue
            row = holdings.loc[(record["ncodpers"], pd.Timestamp(record["fecha_dato"]))]
            for code, product in by_code.items():
                expected = int(float(record[code])) if record[code] else 0
                assert row[product.id] == expected, (record["ncodpers"], code)
            checked += 1
    assert checked >= 6


def test_progress_is_reported_per_chunk(shared_data: Path, catalogue: Catalogue) -> None:
    seen: list[int] = []
    import_santander(shared_data / RAW, catalogue, progress=seen.append, chunk_rows=4_000)
    assert seen == [4_000, 8_000, 9_999]


# -- malformed files ----------------------------------------------------------------------------


def test_missing_required_column_is_line_1_naming_it(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    frame = pd.read_csv(shared_data / RAW, dtype=str, keep_default_na=False, nrows=20)
    path = tmp_path / "no_age.csv"
    frame.drop(columns=["age"]).to_csv(path, index=False)
    with pytest.raises(DataFormatError) as info:
        import_santander(path, catalogue)
    assert (info.value.line, info.value.column) == (1, None)
    assert "age" in info.value.message
    assert str(info.value).startswith(f"{path}:1: ")


@pytest.mark.parametrize("kind", ["too many", "too few"])
def test_row_with_wrong_field_count_names_its_line(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path, kind: str
) -> None:
    lines = _raw_lines(shared_data, 30)
    bad = lines[17].rstrip("\n")
    lines[17] = (bad + ",0\n") if kind == "too many" else (bad.rsplit(",", 1)[0] + "\n")
    path = _write(tmp_path / "ragged.csv", lines)
    with pytest.raises(DataFormatError) as info:
        import_santander(path, catalogue)
    assert info.value.line == 18  # the header is line 1
    assert "expected 48 fields" in info.value.message


def test_empty_and_header_only_files(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    with pytest.raises(DataFormatError, match="empty file"):
        import_santander(_write(tmp_path / "empty.csv", []), catalogue)
    header_only = _write(tmp_path / "header.csv", _raw_lines(shared_data, 1))
    with pytest.raises(DataFormatError, match="no valid rows"):
        import_santander(header_only, catalogue)


def test_unknown_product_column(shared_data: Path, catalogue: Catalogue, tmp_path: Path) -> None:
    frame = pd.read_csv(shared_data / RAW, dtype=str, keep_default_na=False, nrows=5)
    frame["ind_crypto_fin_ult1"] = "0"
    path = tmp_path / "extra_product.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError) as info:
        import_santander(path, catalogue)
    assert (info.value.line, info.value.column) == (1, 49)
    assert "ind_crypto_fin_ult1" in info.value.message


def test_bad_rows_are_rejected_with_reasons(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    frame = pd.read_csv(shared_data / RAW, dtype=str, keep_default_na=False, nrows=10)
    frame.loc[0, "ncodpers"] = "abc"
    frame.loc[1, "ncodpers"] = " "
    frame.loc[2, "fecha_dato"] = "2015-13-28"
    frame.loc[3, "age"] = " 130"
    frame.loc[4, "ind_cco_fin_ult1"] = "2"
    frame.loc[5, "ind_nomina_ult1"] = "NA"
    frame.loc[6, "fecha_alta"] = ""
    frame = pd.concat([frame, frame.iloc[[7]]])  # the same customer and month twice
    path = tmp_path / "bad_rows.csv"
    frame.to_csv(path, index=False)
    result = import_santander(path, catalogue)
    assert result.rows_read == 11
    assert result.rejections == {
        "bad customer id": 1,
        "missing customer id": 1,
        "bad fecha_dato": 1,
        "age out of range 0..120": 1,
        "bad product flag ind_cco_fin_ult1": 1,
        "duplicate customer and month": 1,
    }
    assert result.rows_rejected == 6
    assert result.warnings["missing product flag ind_nomina_ult1 -> 0"] == 1
    assert result.warnings["missing fecha_alta -> first month seen"] == 1
    customers = result.tables.customers.set_index("customer_id")
    assert len(customers) == 5  # rows 5..9 of the ten (row 10 repeats row 7)
    joined = customers.loc[frame.iloc[6]["ncodpers"].strip(), "joined_on"]
    assert joined == pd.Timestamp("2015-01-28")


# -- the command ---------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


def test_command_writes_tables_and_reports(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    result = CliRunner().invoke(
        _cli(), ["data", "import-santander", str(shared_data / RAW), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "missing age" in result.output and "9,999" in result.output
    tables = read_tables(out)
    assert len(tables.customers) == 9_949
    assert tables.customers["acquisition_channel"].value_counts().index[0] == "KHE"
    assert list(tables.holdings.columns[2:]) == [p.id for p in catalogue.holdable]


def test_failed_import_leaves_the_data_folder_untouched(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path, raw_import: SantanderImport
) -> None:
    out = tmp_path / "data"
    write_tables(raw_import.tables, out, [p.id for p in catalogue.holdable])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lines = _raw_lines(shared_data, 3000)
    lines[2500] = lines[2500].rstrip("\n") + ",1\n"
    bad = _write(tmp_path / "bad.csv", lines)
    result = CliRunner().invoke(_cli(), ["data", "import-santander", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{bad}:2501:" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_file_without_the_acquisition_channel_imports_it_as_unknown(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path
) -> None:
    rows = list(csv.reader(_raw_lines(shared_data, 200)))
    drop = rows[0].index("canal_entrada")
    lines = [
        ",".join(f'"{v}"' if "," in v else v for i, v in enumerate(r) if i != drop) + "\n"
        for r in rows
    ]
    result = import_santander(_write(tmp_path / "no_channel.csv", lines), catalogue)
    assert result.rows_read == 199
    assert result.tables.customers["acquisition_channel"].isna().all()
    out = tmp_path / "data"
    write_tables(result.tables, out, [p.id for p in catalogue.holdable])
    assert read_tables(out).customers["acquisition_channel"].isna().all()


def test_tables_written_before_the_acquisition_channel_read_it_as_unknown(
    raw_import: SantanderImport, catalogue: Catalogue, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    old = raw_import.tables.customers.drop(columns=["acquisition_channel"])
    tables = Tables(old, raw_import.tables.holdings, raw_import.tables.behaviour)
    write_tables(tables, tmp_path, [p.id for p in catalogue.holdable])  # filled as unknown
    path = tmp_path / "customers.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["acquisition_channel"]), path)  # an old file
    back = read_tables(tmp_path)
    assert back.customers["acquisition_channel"].isna().all()
    assert len(back.customers) == len(old)


def test_contracts_are_left_empty_and_the_import_says_so(
    shared_data: Path, catalogue: Catalogue, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="features.santander"):
        result = import_santander(shared_data / PANEL, catalogue)
    # Customers do hold term deposits and loans, but no date or amount is published.
    deposits = ["short_term_deposit", "medium_term_deposit", "long_term_deposit", "loans"]
    assert int(result.tables.holdings[deposits].to_numpy().sum()) > 0
    assert result.tables.contracts.empty
    assert result.notes == [NO_CONTRACTS]
    assert NO_CONTRACTS in caplog.messages
    out = tmp_path / "data"
    cli = CliRunner().invoke(
        _cli(), ["data", "import-santander", str(shared_data / RAW), "--out", str(out)]
    )
    assert cli.exit_code == 0, cli.output
    assert "contracts table left empty" in " ".join(cli.output.split())
    assert (out / "contracts" / "part-00000.parquet").exists()  # the partitioned layout
    assert read_tables(out).contracts.empty
