"""Batch churn scoring: the retention list equals online scoring; files are written safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from core.catalogue import Catalogue
from core.scoring.churn import LinearChurnModel, churn_band
from core.settings import Settings
from core.tables import Tables, contract_products, read_partition, write_tables
from features.pointintime import compute_features, to_records
from registry.client import Registry
from tests.support.small_banks import AS_OF
from training.batch_scoring import (
    CHUNK_ROWS,
    ScoringError,
    output_format,
    retention_list,
    retention_list_partitions,
    score_frame,
    write_atomically,
)


def test_batch_rows_equal_online_scoring_for_the_same_as_of(
    scoring_bank: Tables,
    catalogue: Catalogue,
    scoring_model: LinearChurnModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("training.batch_scoring.CHUNK_ROWS", 500)  # several chunks
    features = compute_features(scoring_bank, AS_OF, catalogue)
    seen: list[tuple[int, int]] = []
    scores = score_frame(
        scoring_model, features, 0.2, 0.5, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(features), len(features)) and len(seen) == 3
    for i, (customer_id, record) in enumerate(to_records(features)):
        row = scores.iloc[i]
        assert row["customer_id"] == customer_id
        p = scoring_model.predict_proba(record)
        assert row["churn_probability"] == p
        assert row["band"] == churn_band(p, 0.2, 0.5).value
        online = scoring_model.reasons(record)
        codes = [row[f"reason_{k}_code"] for k in (1, 2, 3)]
        texts = [row[f"reason_{k}"] for k in (1, 2, 3)]
        assert codes == [r.code for r in online] + [""] * (3 - len(online))
        assert texts == [r.text for r in online] + [""] * (3 - len(online))
    assert CHUNK_ROWS > 500


def test_retention_list_is_every_customer_riskiest_first(
    scoring_bank: Tables, catalogue: Catalogue, scoring_model: LinearChurnModel, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    scores = retention_list(scoring_model, scoring_bank, catalogue, settings, AS_OF)
    features = compute_features(scoring_bank, AS_OF, catalogue)
    # Every customer of the bank at as_of; those who had left (kept in the feature set for
    # win-back) are no retention target.
    left = pd.to_datetime(scoring_bank.customers["left_on"]) <= pd.Timestamp(AS_OF)
    gone = set(scoring_bank.customers.loc[left.to_numpy(), "customer_id"])
    assert gone & set(features.index)
    assert set(scores["customer_id"]) == set(features.index) - gone
    assert scores["customer_id"].is_unique
    assert np.all(np.diff(scores["churn_probability"].to_numpy()) <= 0)
    assert set(scores["band"]) <= {"low", "medium", "high"}


def test_partitions_give_the_list_of_one_pass(
    scoring_bank: Tables, catalogue: Catalogue, scoring_model: LinearChurnModel, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    ids = [p.id for p in catalogue.holdable]
    write_tables(scoring_bank, tmp_path / "data", ids, contract_products(catalogue), partitions=3)
    seen: list[int] = []
    started: list[tuple[int, int]] = []
    by_partition = retention_list_partitions(
        scoring_model,
        3,
        lambda k: read_partition(tmp_path / "data", k),
        catalogue,
        settings,
        AS_OF,
        progress=lambda done, known: seen.append(done),
        on_partition=lambda k, n: started.append((k, n)),
    )
    whole = retention_list(scoring_model, scoring_bank, catalogue, settings, AS_OF)
    assert started == [(0, 3), (1, 3), (2, 3)]
    assert seen == sorted(seen) and seen[-1] == len(whole)
    assert np.all(np.diff(by_partition["churn_probability"].to_numpy()) <= 0)
    pd.testing.assert_frame_equal(
        by_partition.sort_values("customer_id").reset_index(drop=True),
        whole.sort_values("customer_id").reset_index(drop=True),
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_written_atomically_in_the_format_of_the_extension(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "churn_probability": [0.1, 0.7]})
    path = write_atomically(frame, tmp_path / "out" / f"list{suffix}")
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_unsupported_extension_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match=r"unsupported output format '\.xlsx'"):
        output_format(tmp_path / "list.xlsx")


def test_cli_scores_with_the_registered_model(
    scoring_bank: Tables,
    catalogue: Catalogue,
    scoring_model: LinearChurnModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.score import app as score_app

    app = typer.Typer()
    app.add_typer(score_app, name="score")  # as the lead mounts it: nbo score churn
    home = tmp_path / "home"
    monkeypatch.setenv("NBO_HOME", str(home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    settings = Settings(home=home, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    ids = [p.id for p in catalogue.holdable]
    write_tables(scoring_bank, settings.data_dir, ids, contract_products(catalogue), partitions=2)
    runner = CliRunner()
    out = tmp_path / "retention.csv"
    args = ["score", "churn", "--as-of", f"{AS_OF:%Y-%m-%d}", "--out", str(out)]
    missing = runner.invoke(app, args)  # nothing registered yet
    assert missing.exit_code == 2 and "nbo-churn" in missing.output
    assert "Traceback" not in missing.output
    registry = Registry(settings)
    version = registry.log_and_register(scoring_model, settings.churn_model_name)
    registry.promote(settings.churn_model_name, version.version)
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "list.json")])
    assert bad.exit_code == 2 and "use .parquet or .csv" in bad.output
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    features = compute_features(scoring_bank, AS_OF, catalogue)
    assert len(written) == (~features["departed"].astype(bool)).sum()
