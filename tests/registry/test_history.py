"""Alias history survives restarts and answers "which version held the alias at time T"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings, get_settings
from registry import promotion
from registry.client import Registry
from registry.history import AliasEvent, champion_line, holders_at
from tests.support.registry import SEEDED_MODEL, registry_settings, seeded_store

MODEL = SEEDED_MODEL


def test_history_read_back_by_a_new_registry_answers_at_time_t(tmp_path: Path) -> None:
    settings = registry_settings(tmp_path, seeded_store())  # version 1 is champion
    writer = Registry(settings)
    promotion.promote(writer, MODEL, 3, alias="challenger", reason="try it", force=True)
    promotion.promote(writer, MODEL, 2, reason="better")
    promotion.rollback(writer, MODEL, reason="incident")
    del writer

    events = Registry(settings).history(MODEL)  # a "restarted" process
    assert [(e.seq, e.alias, e.version, e.previous, e.action) for e in events] == [
        (1, "champion", 1, None, "promote"),
        (2, "challenger", 3, None, "promote"),
        (3, "champion", 2, 1, "promote"),
        (4, "champion", 1, 2, "rollback"),
    ]
    assert all(e.actor for e in events)
    assert [e.reason for e in events] == ["first model", "try it", "better", "incident"]
    assert [e.forced for e in events] == [False, True, False, False]
    before = events[0].at - timedelta(seconds=1)
    assert holders_at(events, before) == {}
    assert holders_at(events, events[0].at) == {"champion": 1}
    assert holders_at(events, events[2].at) == {"champion": 2, "challenger": 3}
    assert holders_at(events, events[3].at + timedelta(days=1)) == {
        "champion": 1,
        "challenger": 3,
    }


def _event(seq: int, version: int, minutes: int, action: str = "promote") -> AliasEvent:
    return AliasEvent(
        seq=seq,
        alias="champion",
        version=version,
        previous=None,
        actor="t",
        at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes),
        reason="",
        action=action,
    )


def test_holders_at_between_events_and_naive_time_refused() -> None:
    events = [_event(1, 4, 0), _event(2, 5, 10), _event(3, 4, 20, "rollback")]
    at = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    assert holders_at(events, at) == {"champion": 5}
    with pytest.raises(ValueError, match="no time zone"):
        holders_at(events, at.replace(tzinfo=None))
    assert champion_line(events) == [4]


def test_cli_history_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.registry import app

    settings: Settings = registry_settings(tmp_path, seeded_store())  # version 1 is champion
    registry = Registry(settings)
    promotion.promote(registry, MODEL, 2)
    first, second = registry.history(MODEL)
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        at_first = runner.invoke(app, ["history", MODEL, "--at", first.at.isoformat()])
        at_second = runner.invoke(app, ["history", MODEL, "--at", second.at.isoformat()])
        bad = runner.invoke(app, ["history", MODEL, "--at", "yesterday"])
    finally:
        get_settings.cache_clear()
    assert at_first.exit_code == 0, at_first.output
    assert "│ champion   │       1 │" in at_first.output
    assert "│ champion   │       2 │" in at_second.output
    assert bad.exit_code == 2 and "not an ISO timestamp" in bad.output
