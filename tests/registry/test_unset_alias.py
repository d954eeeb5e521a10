"""``nbo registry unset-alias`` on a real SQLite-backed MLflow registry: the alias goes, the
history says who removed it, when and why, and rollback / "who held it then" follow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.registry import app
from core.settings import Settings, get_settings
from registry import promotion
from registry.client import ModelNotFoundError, Registry, RegistryError
from registry.history import champion_line, holders_at
from tests.support.registry import SEEDED_MODEL, registry_settings, seeded_store

MODEL = SEEDED_MODEL  # version 1 is champion


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(registry_settings(tmp_path, seeded_store()))


@pytest.fixture
def cli(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    settings: Settings = registry.settings
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("NBO_ACTOR", "ops-bot")
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_unset_challenger_is_recorded_and_ends_its_tenure(registry: Registry) -> None:
    promotion.promote(registry, MODEL, 2, alias="challenger", reason="a/b test")
    event = registry.unset_alias(MODEL, "challenger", reason="test over", actor="ana")
    assert registry.alias_version(MODEL, "challenger") is None
    assert registry.alias_version(MODEL, "champion") == 1
    assert (event.action, event.alias, event.version, event.actor, event.reason) == (
        "unset",
        "challenger",
        2,
        "ana",
        "test over",
    )
    events = registry.history(MODEL)
    assert events[-1] == event
    assert holders_at(events, events[1].at) == {"champion": 1, "challenger": 2}
    assert holders_at(events, event.at) == {"champion": 1}


def test_unset_champion_pops_it_from_the_rollback_line(registry: Registry) -> None:
    promotion.promote(registry, MODEL, 2)
    registry.unset_alias(MODEL, "champion", reason="withdrawn")
    with pytest.raises(RegistryError, match="no champion to roll back"):
        promotion.rollback(registry, MODEL)
    promotion.promote(registry, MODEL, 9)  # first champion again: no gate to compare with
    assert champion_line(registry.history(MODEL)) == [1, 9]
    info, _ = promotion.rollback(registry, MODEL)
    assert info.version == 1  # never back to the withdrawn version 2


def test_unknown_model_or_alias_is_an_error_and_nothing_is_recorded(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match=r"has no alias 'challenger' \(aliases: champion"):
        registry.unset_alias(MODEL, "challenger", reason="x")
    with pytest.raises(ModelNotFoundError, match="'no-such-model'"):
        registry.unset_alias("no-such-model", "champion", reason="x")
    assert len(registry.history(MODEL)) == 1


def test_cli_unset_alias_needs_a_reason_and_yes_for_champion(
    registry: Registry, cli: CliRunner
) -> None:
    promotion.promote(registry, MODEL, 2, alias="challenger")
    cases = [
        (["unset-alias", MODEL, "challenger"], "needs --reason"),
        (["unset-alias", MODEL, "challenger", "--reason", "  "], "needs --reason"),
        (["unset-alias", MODEL, "champion", "--reason", "withdrawn"], "add --yes"),
        (["unset-alias", MODEL, "staging", "--reason", "x"], "has no alias 'staging'"),
        (["unset-alias", "no-such-model", "challenger", "--reason", "x"], "'no-such-model'"),
    ]
    for args, message in cases:
        result = cli.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert registry.alias_version(MODEL, "champion") == 1
    assert registry.alias_version(MODEL, "challenger") == 2
    assert len(registry.history(MODEL)) == 2

    done = cli.invoke(app, ["unset-alias", MODEL, "challenger", "--reason", "test over"])
    assert done.exit_code == 0, done.output
    assert "alias challenger removed (it pointed at version 2)" in done.output
    champion = cli.invoke(app, ["unset-alias", MODEL, "champion", "--reason", "bad", "--yes"])
    assert champion.exit_code == 0, champion.output
    assert registry.alias_version(MODEL, "champion") is None
    history = cli.invoke(app, ["history", MODEL])
    assert history.output.count("unset") == 2 and "ops-bot" in history.output
