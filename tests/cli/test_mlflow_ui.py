"""``nbo mlflow ui`` builds the ``mlflow server`` command for the project's store (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.mlflow_ui import AlreadyAServerError, server_argv, server_env, ui_url
from core.settings import Settings, get_settings


def _option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, argv
    return argv[argv.index(name) + 1]


def test_embedded_store_serves_its_artifacts_from_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=None)
    argv = server_argv(settings, "127.0.0.1", 5055, "/venv/bin/python")
    assert argv[:4] == ["/venv/bin/python", "-m", "mlflow", "server"]
    db = (tmp_path / "home" / "mlflow" / "mlflow.db").resolve()
    assert _option(argv, "--backend-store-uri") == f"sqlite:///{db}"
    artifacts = (tmp_path / "home" / "mlflow" / "artifacts").resolve().as_uri()
    assert _option(argv, "--default-artifact-root") == artifacts
    assert _option(argv, "--artifacts-destination") == artifacts
    assert (_option(argv, "--host"), _option(argv, "--port")) == ("127.0.0.1", "5055")
    assert _option(argv, "--workers") == "1"


def test_a_database_store_keeps_mlflows_artifact_defaults(tmp_path: Path) -> None:
    uri = "postgresql://mlflow@db:5432/mlflow"
    settings = Settings(home=tmp_path, mlflow_tracking_uri=uri)
    argv = server_argv(settings, "0.0.0.0", 5000, "python")
    assert _option(argv, "--backend-store-uri") == uri
    assert "--default-artifact-root" not in argv and "--artifacts-destination" not in argv


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "HTTPS://mlflow.bank.example"])
def test_a_tracking_server_is_refused_with_its_address(tmp_path: Path, uri: str) -> None:
    settings = Settings(home=tmp_path, mlflow_tracking_uri=uri)
    with pytest.raises(AlreadyAServerError, match="already an MLflow server") as raised:
        server_argv(settings, "127.0.0.1", 5000, "python")
    assert uri in str(raised.value)


def test_url_a_browser_can_open() -> None:
    assert ui_url("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert ui_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert ui_url("::1", 5000) == "http://[::1]:5000"


def test_job_runner_is_off_unless_asked_for() -> None:
    assert server_env({"PATH": "/bin"}) == {
        "PATH": "/bin",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    asked = server_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert asked["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_cli_refuses_a_tracking_server_with_exit_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["mlflow", "ui"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "already an MLflow server (http://mlflow:5000)" in result.output
