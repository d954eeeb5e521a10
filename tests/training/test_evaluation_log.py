"""``nbo evaluate ... --log``: an evaluation is an MLflow run that says which model its
figures belong to, with the data file as a dataset input, on a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings
from tests.support.churn_files import fake_churn_modelling
from tests.support.paths import unreachable_mlflow
from tests.support.registry import empty_store
from tests.support.scorers import tiny_churn_model
from training.evaluation_log import (
    EVALUATION_EXPERIMENT,
    Evaluated,
    file_digest,
    log_evaluation,
)


def _runs(settings: Settings) -> list:  # type: ignore[type-arg]
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(EVALUATION_EXPERIMENT)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


def test_cli_log_records_figures_data_and_what_was_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "churn.csv"
    fake_churn_modelling(800).to_csv(data, index=False)
    monkeypatch.setenv("NBO_HOME", str(tmp_path / "home"))
    out = CliRunner().invoke(
        app,
        ["evaluate", "churn", "--churn-modelling", str(data), "--folds", "3", "--json", "--log"],
    )
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    settings = Settings(home=tmp_path / "home")
    (run,) = _runs(settings)
    assert run.data.metrics["quality/roc_auc"] == pytest.approx(printed["roc_auc"])
    assert run.data.metrics["data/rows"] == 800
    tags = run.data.tags
    assert tags["nbo.evaluates"] == "churn"
    assert "not the registered nbo-churn" in tags["nbo.evaluated_model"]
    assert tags["nbo.evaluation"] == "3-fold stratified CV"
    assert run.info.run_name.startswith("churn evaluation ") and run.info.run_name.endswith(
        " churn.csv"
    )
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == file_digest(data)
    assert {t.key: t.value for t in dataset.tags}[
        mlflow_tags.MLFLOW_DATASET_CONTEXT
    ] == "evaluation"


def test_a_fitted_scorer_is_the_runs_model_and_no_version(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=empty_store(tmp_path / "m.db"))
    data = tmp_path / "file.csv"
    data.write_text("a,b\n1,2\n")
    evaluated = Evaluated("a hand-made churn model", "nbo train churn", tiny_churn_model(1.0))
    run_id = log_evaluation(
        settings, "churn", data, {"roc_auc": 0.7, "rows": 2, "algorithm": "x"}, evaluated, "CV"
    )
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(run_id)
    assert run.data.params["algorithm"] == "x"  # text results are params, not metrics
    assert run.data.tags["nbo.same_code_as"] == "nbo train churn"
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run_id]
    assert not client.search_registered_models()  # an evaluation never makes a version


def test_an_unreachable_tracking_store_exits_2_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "churn.csv"
    fake_churn_modelling(300).to_csv(data, index=False)
    monkeypatch.setenv("NBO_HOME", str(tmp_path / "home"))
    offline = unreachable_mlflow(Settings(home=tmp_path / "home"), monkeypatch)
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", str(offline.mlflow_tracking_uri))
    out = CliRunner().invoke(
        app, ["evaluate", "churn", "--churn-modelling", str(data), "--folds", "2", "--log"]
    )
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output and "error:" in out.output
