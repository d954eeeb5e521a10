"""``nbo simulate`` end to end on a tiny bank: real app, real Redis, real MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings
from registry.client import Registry

DAYS, VISITS = 4, 30


def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)  # not used: below
    for name in ("feature", "contact", "events", "audit"):  # cleaned up by the fixture
        monkeypatch.setenv(f"NBO_{name.upper()}_PREFIX", getattr(settings, f"{name}_prefix"))


@pytest.mark.slow  # 90-170 s (two arms, a retrain and a promotion); pytest -m slow
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_simulate_runs_the_loop_registers_promotes_and_reports(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, migrated_store: Path
) -> None:
    _env(settings, monkeypatch)
    out = tmp_path / "report.json"
    args = ["simulate", "--customers", "300", "--days", str(DAYS), "--months", "6"]
    args += ["--visits-per-day", str(VISITS), "--json", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    run, retrained, periods = report["run"], report["retraining"], report["periods"]
    assert run["decisions"] == DAYS * VISITS
    assert 0 < run["control_decisions"] < run["decisions"]
    assert run["accepted"] > 0 and run["declined"] > 0
    # Retrained from the first half's logs, registered, promoted through the gate.
    assert retrained["decisions_exported"] == DAYS // 2 * VISITS
    assert retrained["promoted"] is True and retrained["gate"] == []
    # The run's own registry, never the one NBO_MLFLOW_TRACKING_URI names.
    # the fixture's NBO_MLFLOW_TRACKING_URI names a copy of the empty migrated store: untouched
    assert (tmp_path / "mlflow.db").read_bytes() == migrated_store.read_bytes()
    registry = Registry(Settings(home=Path(run["home"]), mlflow_tracking_uri=None))
    assert registry.alias_version("nbo-recommender", "champion") == 1
    assert registry.alias_version("nbo-response", "champion") == retrained["version"]
    assert registry.run_data(registry.version("nbo-response", retrained["version"]).run_id).params[
        "data_source"
    ] == ("logged decisions and events")
    # Outcomes by period and variant, with uplift against control.
    assert set(periods) == {"before_retraining", "after_retraining", "whole_run"}
    for name, figures in periods.items():
        variants = {g["group"]["variant"] for g in figures["groups"]}
        assert variants == {"champion", "control"}, name
        assert [u["group"]["variant"] for u in figures["uplift"]] == ["champion"]
    whole = {g["group"]["variant"]: g for g in periods["whole_run"]["groups"]}
    assert sum(g["decisions"] for g in whole.values()) == run["decisions"]
    assert whole["champion"]["accepted"] == run["accepted"]
    assert periods["before_retraining"]["until"] < periods["after_retraining"]["since"]
    # The baseline arm: the same bank and days, never retrained, compared after retraining.
    comparison = report["learned_vs_baseline"]
    assert comparison["decisions"] == run["decisions"]
    assert comparison["home"] != run["home"]
    after = comparison["after_retraining"]
    learned = {g["group"]["variant"]: g for g in periods["after_retraining"]["groups"]}
    assert after["acceptance"]["learned"] == {
        "successes": learned["champion"]["accepted"],
        "trials": learned["champion"]["offers_shown"],
    }
    assert after["acceptance"]["difference"] is not None


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--days", "-1", "--days -1 must be at least 2"),
        ("--customers", "5", "--customers 5 must be at least 100"),
        ("--control-share", "1.5", "--control-share 1.5 must be in [0, 1)"),
    ],
)
def test_bad_options_exit_2_naming_the_option(option: str, value: str, message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", option, value])
    assert result.exit_code == 2
    assert message in result.output
