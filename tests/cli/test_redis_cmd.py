"""``nbo redis start / stop / status`` name the home a server belongs to and leave another
home's server alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.embedded_redis import stop_embedded_redis
from core.settings import get_settings
from tests.support.paths import free_port


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    chosen = free_port()
    monkeypatch.delenv("NBO_REDIS_URL", raising=False)
    monkeypatch.setenv("NBO_EMBEDDED_REDIS_PORT", str(chosen))
    yield chosen
    stop_embedded_redis(chosen)


def nbo(monkeypatch: pytest.MonkeyPatch, home: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("NBO_HOME", str(home))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["redis", *args])
    return result.exit_code, result.output


def test_each_home_sees_whose_redis_runs(
    port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert nbo(monkeypatch, first, "status")[0] == 1  # not running

    code, out = nbo(monkeypatch, first, "start")
    assert code == 0 and f"redis://127.0.0.1:{port}/0" in out
    code, out = nbo(monkeypatch, first, "status")
    assert code == 0 and f"home {first}" in out
    assert "appendonly yes" in out and "appendfsync everysec" in out

    for command in ("start", "status", "stop"):  # another checkout on the same port
        code, out = nbo(monkeypatch, second, command)
        assert code == 2, (command, out)
        assert f"another home, {first}" in out and "NBO_EMBEDDED_REDIS_PORT" in out

    code, out = nbo(monkeypatch, first, "stop")
    assert code == 0 and f"stopped: home {first}" in out
    assert nbo(monkeypatch, second, "start")[0] == 0  # the port is free for it now
