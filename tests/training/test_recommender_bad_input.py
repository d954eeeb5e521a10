"""Clear errors on bad Santander panels and bad evaluation dates."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.evaluate_recommender import recommender as evaluate_command
from core.catalogue import Catalogue
from features.errors import DataFormatError
from training.datasets import DatasetError
from training.evaluate_recommender import (
    evaluate_panel,
)
from training.recommender import RecommenderConfig

SMALL = RecommenderConfig(max_iter=40, max_leaf_nodes=7, min_samples_leaf=20, bags=2)


# -- bad input --------------------------------------------------------------------------------

PANEL_HEADER = (
    "fecha_dato,ncodpers,ind_empleado,pais_residencia,sexo,age,fecha_alta,ind_nuevo,antiguedad,"
    "indrel,ult_fec_cli_1t,indrel_1mes,tiprel_1mes,indresi,indext,conyuemp,canal_entrada,indfall,"
    "tipodom,cod_prov,nomprov,ind_actividad_cliente,renta,segmento"
)


PROFILE = "N,ES,V,35,2010-01-28,0,60,1,,1,A,S,N,,KAT,N,1,28,MADRID,1,50000.0,02 - PARTICULARES"


def _panel(tmp_path: Path, catalogue: Catalogue, rows: list[tuple[str, str, list[int]]]) -> Path:
    codes = list(catalogue.by_santander_code)
    lines = [PANEL_HEADER + "," + ",".join(codes)]
    for month, cust, held in rows:
        profile = f"{month},{cust},{PROFILE}"
        flags = ["1" if i in held else "0" for i in range(len(codes))]
        lines.append(profile + "," + ",".join(flags))
    path = tmp_path / "panel.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_panel_without_additions_in_the_target_month_is_refused(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    april = {"1": [2, 5], "2": [2, 7]}  # two different additions in April, none in May
    rows = [("2016-03-28", c, [2]) for c in april]
    rows += [(m, c, held) for m in ("2016-04-28", "2016-05-28") for c, held in april.items()]
    path = _panel(tmp_path, catalogue, rows)
    with pytest.raises(DatasetError, match="no customer added a product between 2016-04-28"):
        evaluate_panel(path, catalogue, date(2016, 4, 28), date(2016, 5, 28), SMALL)


def test_panel_with_missing_or_unknown_columns_names_them(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    path = _panel(tmp_path, catalogue, [("2016-04-28", "1", [2])])
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    missing = tmp_path / "missing.csv"
    missing.write_text(text.replace("renta,", "").replace(",50000.0", ""))
    with pytest.raises(DataFormatError, match="renta"):
        evaluate_panel(missing, catalogue, date(2016, 4, 28), date(2016, 5, 28), SMALL)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(text.replace("ind_ahor_fin_ult1", "ind_zzzz_fin_ult1"))
    with pytest.raises(DataFormatError, match="ind_zzzz_fin_ult1"):
        evaluate_panel(unknown, catalogue, date(2016, 4, 28), date(2016, 5, 28), SMALL)
    with pytest.raises(DatasetError, match="2016-06-28 is not a snapshot"):
        evaluate_panel(path, catalogue, date(2016, 4, 28), date(2016, 6, 28), SMALL)


def test_cli_refuses_train_until_after_target(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(evaluate_command)
    args = ["--santander", str(tmp_path / "none.csv"), "--train-until", "2016-05-28"]
    out = CliRunner().invoke(app, [*args, "--target", "2016-04-28"])
    assert out.exit_code == 2
    assert "must be before --target" in out.output
    assert "Traceback" not in out.output
    missing = CliRunner().invoke(
        app,
        [
            "--santander",
            str(tmp_path / "none.csv"),
            "--train-until",
            "2016-04-28",
            "--target",
            "2016-05-28",
        ],
    )
    assert missing.exit_code == 2 and "none.csv" in missing.output
