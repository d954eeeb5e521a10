"""The MLflow facade against a real SQLite-backed registry in a temp dir (no mocks).

Creating an MLflow SQLite store runs its schema migrations, which takes seconds; each test
gets a copy of one migrated, empty database instead, so tests stay isolated and fast.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from core.scoring.base import ChurnScorer
from core.settings import Settings, get_settings
from registry.client import ModelNotFoundError, Registry, RegistryError
from tests.support.scorers import tiny_churn_model

MODEL = "nbo-churn-test"


@pytest.fixture
def settings(tmp_path: Path, migrated_store: Path) -> Settings:
    """This test's own registry (a copy of the run's migrated store) and NBO home."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated_store, db)
    return Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{db}")


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings)


@pytest.fixture
def two_versions(registry: Registry) -> Registry:
    for i, weight in enumerate((1.0, 2.0)):
        registry.log_and_register(
            tiny_churn_model(weight),
            MODEL,
            params={"weight": weight},
            metrics={"roc_auc": 0.8 + i / 10},
            tags={"nbo.kind": "churn"},
        )
    return registry


def test_register_creates_ready_versions_with_run_metrics(
    two_versions: Registry, settings: Settings
) -> None:
    versions = two_versions.list_versions(MODEL)
    assert [v.version for v in versions] == [2, 1]
    assert all(v.status == "READY" and v.aliases == [] for v in versions)
    two_versions.promote(MODEL, 1, alias="challenger")
    assert [v.aliases for v in two_versions.list_versions(MODEL)] == [[], ["challenger"]]
    assert versions[0].metrics["roc_auc"] == pytest.approx(0.9)
    client = MlflowClient(settings.tracking_uri)
    assert versions[1].run_id is not None
    run = client.get_run(versions[1].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["weight"] == "1.0"
    assert run.data.metrics["quality/roc_auc"] == pytest.approx(0.8)
    # Artifacts land under NBO home, never in a ./mlruns of the working directory.
    experiment = client.get_experiment_by_name("nbo")
    assert experiment is not None
    assert experiment.artifact_location == settings.artifact_root
    assert (versions[0].source or "").startswith(settings.artifact_root)
    assert not Path("mlruns").exists()


def test_promote_moves_the_alias(two_versions: Registry) -> None:
    two_versions.promote(MODEL, 1)
    assert two_versions.version(MODEL, 1).aliases == ["champion"]
    info = two_versions.promote(MODEL, 2, alias="champion")
    assert info.aliases == ["champion"]
    assert two_versions.version(MODEL, 1).aliases == []
    two_versions.promote(MODEL, 1, alias="challenger")
    assert two_versions.version(MODEL, 1).aliases == ["challenger"]


@pytest.mark.parametrize(
    ("name", "version", "alias", "error", "named"),
    [
        (MODEL, 9, "champion", ModelNotFoundError, "no version 9"),
        ("no-such-model", 1, "champion", ModelNotFoundError, "'no-such-model'"),
        (MODEL, 1, "production", RegistryError, "'production'"),
    ],
)
def test_bad_promotion_fails_and_leaves_alias_unchanged(
    two_versions: Registry, name: str, version: int, alias: str, error: type, named: str
) -> None:
    two_versions.promote(MODEL, 2)
    with pytest.raises(error, match=named):
        two_versions.promote(name, version, alias)
    assert two_versions.load(MODEL, "champion").version == 2
    assert two_versions.version(MODEL, 1).aliases == []


def test_load_returns_the_aliased_scorer(two_versions: Registry) -> None:
    two_versions.promote(MODEL, 1)
    loaded = two_versions.load(MODEL, "champion")
    assert (loaded.name, loaded.version, loaded.alias) == (MODEL, 1, "champion")
    assert isinstance(loaded.scorer, ChurnScorer)
    record = {"months_since_login": 4, "tier": "mass"}
    assert loaded.scorer.predict_proba(record) == tiny_churn_model(1.0).predict_proba(record)
    assert loaded.run_id == two_versions.version(MODEL, 1).run_id


def test_load_unknown_alias_or_model(two_versions: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match="no alias 'champion'"):
        two_versions.load(MODEL, "champion")
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        two_versions.load("nope", "champion")


def test_version_is_a_loadable_pyfunc(two_versions: Registry) -> None:
    source = two_versions.version(MODEL, 2).source
    assert source is not None
    pyfunc = mlflow.pyfunc.load_model(source)
    rows = pd.DataFrame({"months_since_login": [0, 6], "tier": ["mass", "private"]})
    out = pyfunc.predict(rows)
    model = tiny_churn_model(2.0)
    expected = [model.predict_proba({str(k): v for k, v in r.items()}) for _, r in rows.iterrows()]
    assert out["churn_probability"].tolist() == pytest.approx(expected)


def test_non_scorer_is_refused_and_nothing_registered(registry: Registry) -> None:
    with pytest.raises(
        RegistryError, match="is not a RecommenderScorer, a ChurnScorer, a MaturityScorer or a Resp"
    ):
        registry.log_and_register(object(), MODEL)  # type: ignore[arg-type]
    assert registry.model_names() == []


def test_failed_run_body_marks_run_failed(registry: Registry, settings: Settings) -> None:
    with pytest.raises(RuntimeError), registry.start_run("boom") as run_id:
        raise RuntimeError("fit exploded")
    assert MlflowClient(settings.tracking_uri).get_run(run_id).info.status == "FAILED"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("COLUMNS", "200")  # rich would otherwise wrap the table at 80
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_list_and_promote(two_versions: Registry, cli_env: Settings) -> None:
    from cli.registry import app

    runner = CliRunner()
    promoted = runner.invoke(app, ["promote", MODEL, "2", "--alias", "challenger"])
    assert promoted.exit_code == 0, promoted.output
    assert two_versions.version(MODEL, 2).aliases == ["challenger"]
    listed = runner.invoke(app, ["list", MODEL])
    assert listed.exit_code == 0
    assert "challenger" in listed.output and "0.9000" in listed.output


def test_cli_promote_missing_version_exits_2_without_traceback(
    two_versions: Registry, cli_env: Settings
) -> None:
    from cli.registry import app

    result = CliRunner().invoke(app, ["promote", MODEL, "7"])
    assert result.exit_code == 2
    assert "no version 7" in result.output
    assert "Traceback" not in result.output
