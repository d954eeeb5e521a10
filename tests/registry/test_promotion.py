"""The promotion gate, rollback and the CLI on a real SQLite-backed MLflow registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings, get_settings
from registry import promotion
from registry.client import ModelNotFoundError, Registry, RegistryError
from registry.history import champion_line
from registry.promotion import PromotionRefused
from registry.replay import ReplayReport
from tests.support.registry import SEEDED_MODEL, registry_settings, seeded_store

MODEL = SEEDED_MODEL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return registry_settings(tmp_path, seeded_store())


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings)


def test_better_version_is_promoted_and_recorded(registry: Registry) -> None:
    info, verdict = promotion.promote(registry, MODEL, 2, reason="retrained", actor="ana")
    assert verdict.allowed and info.aliases == ["champion"]
    last = registry.history(MODEL)[-1]
    assert (last.alias, last.version, last.previous, last.actor, last.reason) == (
        "champion",
        2,
        1,
        "ana",
        "retrained",
    )
    assert last.forced is False


def test_worse_version_is_refused_recorded_and_alias_unchanged(registry: Registry) -> None:
    """Version 3 (0.75) is 0.05 below the champion (0.80), beyond the default margin 0.02;
    neither has per-row holdout values, so the logged metrics are compared."""
    with pytest.raises(PromotionRefused, match=r"roc_auc 0.7500 is worse .* 0.8000"):
        promotion.promote(registry, MODEL, 3, reason="cheaper", actor="ana")
    assert registry.alias_version(MODEL, "champion") == 1
    refused = registry.history(MODEL)[-1]
    assert (refused.seq, refused.alias, refused.version, refused.previous) == (2, "champion", 3, 1)
    assert (refused.outcome, refused.actor, refused.reason) == ("refused", "ana", "cheaper")
    assert "diff -0.0500" in refused.gate and "margin 0.0200" in refused.gate
    assert "no per-row holdout values" in refused.gate
    # The challenger must clear the same bar.
    with pytest.raises(PromotionRefused):
        promotion.promote(registry, MODEL, 3, alias="challenger")
    assert registry.alias_version(MODEL, "challenger") is None
    assert [e.outcome for e in registry.history(MODEL)] == ["moved", "refused", "refused"]
    # Refusals never count as holders: rollback and "who held it then" ignore them.
    assert champion_line(registry.history(MODEL)) == [1]


def test_different_evaluation_data_is_refused_even_if_better(registry: Registry) -> None:
    for version in (4, 5, 6):  # other fingerprint, other holdout date, no fingerprint
        with pytest.raises(PromotionRefused, match="evaluation data differs"):
            promotion.promote(registry, MODEL, version)
    assert registry.alias_version(MODEL, "champion") == 1
    assert "evaluation data differs" in registry.history(MODEL)[-1].gate


def test_missing_metric_is_refused(registry: Registry) -> None:
    with pytest.raises(PromotionRefused, match="no roc_auc metric"):
        promotion.promote(registry, MODEL, 7)


def test_force_needs_a_reason_and_is_recorded(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="--force needs --reason"):
        promotion.promote(registry, MODEL, 8, force=True, reason="  ")
    assert registry.alias_version(MODEL, "champion") == 1
    info, verdict = promotion.promote(registry, MODEL, 8, force=True, reason="regulator asked")
    assert info.aliases == ["champion"] and not verdict.allowed
    last = registry.history(MODEL)[-1]
    assert last.forced is True and last.reason == "regulator asked"


def test_unsuitable_replay_refuses(registry: Registry) -> None:
    report = ReplayReport(decisions=10, changed=3, unsuitable=1)
    with pytest.raises(PromotionRefused, match="1 top offers would be unsuitable"):
        promotion.promote(registry, MODEL, 2, replay=report)
    promotion.promote(registry, MODEL, 2, replay=ReplayReport(decisions=10, changed=3))
    assert registry.alias_version(MODEL, "champion") == 2


def test_bad_input_is_a_clear_error_and_alias_unchanged(registry: Registry) -> None:
    cases = [
        (MODEL, 99, "champion", ModelNotFoundError, "no version 99"),
        ("no-such-model", 1, "champion", ModelNotFoundError, "'no-such-model'"),
        (MODEL, 2, "production", RegistryError, "'production'"),
    ]
    for name, version, alias, error, named in cases:
        with pytest.raises(error, match=named):
            promotion.promote(registry, name, version, alias)
    assert registry.alias_version(MODEL, "champion") == 1
    assert len(registry.history(MODEL)) == 1


def test_rollback_walks_back_the_champion_line(registry: Registry) -> None:
    promotion.promote(registry, MODEL, 9)
    promotion.promote(registry, MODEL, 10)
    info, event = promotion.rollback(registry, MODEL, reason="acceptance dropped")
    assert info.version == 9 and (event.action, event.previous) == ("rollback", 10)
    info, _ = promotion.rollback(registry, MODEL)
    assert info.version == 1  # not back to 10: rollbacks pop the line
    with pytest.raises(RegistryError, match="no earlier champion"):
        promotion.rollback(registry, MODEL)
    assert registry.alias_version(MODEL, "champion") == 1


def test_rollback_refuses_a_champion_moved_outside_the_history(registry: Registry) -> None:
    promotion.promote(registry, MODEL, 2)
    registry.client.set_registered_model_alias(MODEL, "champion", "1")  # behind nbo's back
    with pytest.raises(RegistryError, match="does not match the recorded history"):
        promotion.rollback(registry, MODEL)


# -- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("NBO_ACTOR", "risk-officer")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_promote_gate_force_and_history(registry: Registry, cli: CliRunner) -> None:
    from cli.registry import app

    refused = cli.invoke(app, ["promote", MODEL, "8"])
    assert refused.exit_code == 2 and "worse than the champion" in refused.output
    assert "recorded in the alias history" in refused.output
    assert "Traceback" not in refused.output
    no_reason = cli.invoke(app, ["promote", MODEL, "8", "--force"])
    assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.output
    forced = cli.invoke(app, ["promote", MODEL, "8", "--force", "--reason", "audit fix"])
    assert forced.exit_code == 0, forced.output
    assert "gate overridden" in forced.output
    history = cli.invoke(app, ["history", MODEL])
    assert history.exit_code == 0
    assert "risk-officer" in history.output and "promote (forced)" in history.output
    assert "promote (refused)" in history.output
    rolled = cli.invoke(app, ["rollback", MODEL, "--reason", "undo"])
    assert rolled.exit_code == 0 and "from version 8 to 1" in rolled.output
    assert registry.alias_version(MODEL, "champion") == 1
    compared = cli.invoke(app, ["compare", MODEL, "1", "8"])
    assert compared.exit_code == 0, compared.output
    assert "0.8000" in compared.output and "0.7000" in compared.output
    assert "fp-2026-06" in compared.output
    bad = cli.invoke(app, ["compare", MODEL, "1", "77"])
    assert bad.exit_code == 2 and "no version 77" in bad.output
