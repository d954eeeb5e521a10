"""The Churn_Modelling loader, its errors, and the evaluation command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.evaluate_churn import churn
from tests.support.churn_files import fake_churn_modelling
from training.churn_modelling import (
    FEATURES,
    IDENTIFIERS,
    ChurnBlend,
    ChurnModellingError,
    fit_and_score,
    load_churn_modelling,
    split_half,
)


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    fake_churn_modelling(800).to_csv(path, index=False)
    return path


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_identifiers_are_dropped_and_never_features(good_csv: Path) -> None:
    data = load_churn_modelling(good_csv)
    assert list(data.features.columns) == list(FEATURES)
    assert not set(IDENTIFIERS) & set(data.features.columns)
    model = ChurnBlend().fit(data.features, data.target)
    # the same customers with other names and ids score exactly the same
    frame = pd.read_csv(good_csv)
    frame["Surname"], frame["CustomerId"], frame["RowNumber"] = "Zed", 1, frame["RowNumber"][::-1]
    renamed = load_churn_modelling(write(good_csv.parent, frame, "renamed.csv"))
    np.testing.assert_array_equal(
        model.predict_proba(data.features), model.predict_proba(renamed.features)
    )


def test_planted_churn_is_ranked(good_csv: Path) -> None:
    first, second = split_half(load_churn_modelling(good_csv))
    metrics = fit_and_score(first, second)
    assert metrics["roc_auc"] > 0.7, metrics
    assert metrics["top_decile_lift"] > 1.5
    assert metrics["rows"] == len(second.target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["Age", "Exited"]), "missing column(s) Age, Exited"),
        (
            lambda f: f.assign(Balance=f["Balance"].astype(object).where(f.index != 3, "lots")),
            "column 'Balance' must be numeric",
        ),
        (lambda f: f.assign(Exited=0), "column 'Exited' has a single class"),
        (lambda f: f.assign(Exited=2), "column 'Exited' must be 0 or 1"),
        (lambda f: f.assign(Geography="Mars"), "column 'Geography' must be one of"),
        (lambda f: f.iloc[:0], "no data rows"),
    ],
)
def test_bad_input_names_the_problem(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, change(fake_churn_modelling(50)))
    with pytest.raises(ChurnModellingError) as info:
        load_churn_modelling(path)
    assert message in str(info.value)


def cli(*args: str):  # type: ignore[no-untyped-def]
    import typer

    app = typer.Typer()
    app.command()(churn)
    return CliRunner().invoke(app, list(args))


def test_cli_json_and_clear_errors(tmp_path: Path, good_csv: Path) -> None:
    result = cli("--churn-modelling", str(good_csv), "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"roc_auc", "pr_auc", "brier", "top_decile_lift", "rows"}
    assert out["rows"] == 800
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("--churn-modelling", str(empty))
    assert result.exit_code == 2
    assert "empty file" in result.output and "Traceback" not in result.output
    result = cli("--churn-modelling", str(good_csv), "--test", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2 and "no such file" in result.output


def test_dev_file_holds_on_customers_the_model_never_saw(shared_data: Path) -> None:
    dev = shared_data / "bank_churn" / "Churn_Modelling_dev.csv"
    if not dev.is_file():
        pytest.skip(f"public dev file not present at {dev}")
    first, second = split_half(load_churn_modelling(dev))
    metrics = fit_and_score(first, second)
    assert metrics["roc_auc"] >= 0.865, metrics
