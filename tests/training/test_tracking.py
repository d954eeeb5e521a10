"""Where a training run goes and what it records: a trial in its own experiment without a
version, --param validated against the config, run names, descriptions, and lineage in
MLflow's own fields (user, source, git commit, datasets), on a real MLflow store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags
from typer.testing import CliRunner

from cli.main import app
from core.catalogue import Catalogue
from core.settings import Settings
from core.tables import Tables
from features.synthetic import generate_bank
from registry.lineage import git_commit
from tests.support.registry import empty_store
from training import TrainResult
from training.churn import ChurnConfig, train_churn
from training.tracking import RunOptions

END_MONTH = date(2025, 12, 31)
CONFIG = ChurnConfig(max_train_snapshots=2)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(customers=1500, months=8, seed=3, catalogue=catalogue, end_month=END_MONTH)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("tracking")
    return Settings(home=root / "home", mlflow_tracking_uri=empty_store(root / "mlflow.db"))


@pytest.fixture(scope="module")
def trial(bank: Tables, catalogue: Catalogue, settings: Settings) -> TrainResult:
    options = RunOptions(experiment="trials", register=False, description="fewer snapshots")
    return train_churn(bank, catalogue, settings, config=CONFIG, options=options)


@pytest.fixture(scope="module")
def production(bank: Tables, catalogue: Catalogue, settings: Settings) -> TrainResult:
    return train_churn(bank, catalogue, settings, config=CONFIG)


def test_a_trial_goes_to_its_experiment_and_makes_no_version(
    trial: TrainResult, settings: Settings
) -> None:
    client = MlflowClient(settings.tracking_uri)
    assert trial.version is None
    assert not client.search_model_versions(f"name='{settings.churn_model_name}'")
    run = client.get_run(trial.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "trials"
    assert run.data.tags[mlflow_tags.MLFLOW_RUN_NOTE] == "fewer snapshots"
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in models] == [trial.run_id]  # loadable, not registered
    assert mlflow_tags.MLFLOW_MODEL_VERSIONS not in models[0].tags


def test_a_production_run_is_named_linked_and_has_lineage(
    production: TrainResult, settings: Settings
) -> None:
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(production.run_id)
    today = datetime.now(UTC).date().isoformat()
    assert run.info.run_name == f"churn {today} {settings.data_dir.name}"
    tags = run.data.tags
    assert tags[mlflow_tags.MLFLOW_USER] and tags[mlflow_tags.MLFLOW_SOURCE_TYPE] == "LOCAL"
    commit = git_commit()
    if commit is not None:  # a checkout (a source archive has no commit to record)
        assert tags[mlflow_tags.MLFLOW_GIT_COMMIT] == commit[0]
    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(datasets) == {"churn-training", "churn-holdout"}
    holdout = datasets["churn-holdout"]
    assert holdout.dataset.digest == tags["nbo.data_fingerprint"]
    input_tags = {t.key: t.value for t in holdout.tags}
    assert input_tags[mlflow_tags.MLFLOW_DATASET_CONTEXT] == "holdout"
    assert input_tags["nbo.as_of"] == run.data.params["holdout_as_of"]
    assert len(input_tags["nbo.feature_schema"]) == 12
    schema = json.loads(holdout.dataset.schema)
    assert "months_since_login" in {c["name"] for c in schema["mlflow_colspec"]}
    # The logged model says which version it became (the UI shows it as registered).
    logged = client.search_logged_models([run.info.experiment_id])
    linked = [json.loads(m.tags[mlflow_tags.MLFLOW_MODEL_VERSIONS]) for m in logged]
    assert linked == [[{"name": settings.churn_model_name, "version": production.version}]]
    # Its page: who and from where, and its quality metrics on the holdout dataset.
    (model,) = logged
    assert model.tags[mlflow_tags.MLFLOW_USER] == tags[mlflow_tags.MLFLOW_USER]
    metrics = {m.key: m for m in model.metrics or []}
    assert metrics["quality/roc_auc"].value == production.metrics["roc_auc"]
    assert metrics["quality/roc_auc"].dataset_name == "churn-holdout"
    assert not any(k.startswith(("time/", "data/")) for k in metrics)


def test_cli_param_errors_name_the_valid_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before any table is read or run opened: nothing exists afterwards."""
    monkeypatch.setenv("NBO_HOME", str(tmp_path / "home"))
    out = CliRunner().invoke(app, ["train", "churn", "--param", "l2=0.5"])
    assert out.exit_code == 2, out.output
    assert "unknown --param 'l2'" in out.output and "max_train_snapshots" in out.output
    out = CliRunner().invoke(app, ["train", "churn", "--param", "max_train_snapshots=two"])
    assert out.exit_code == 2 and "not a valid int" in out.output
    assert not (tmp_path / "home" / "mlflow").exists()
