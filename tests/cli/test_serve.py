"""``nbo serve`` refuses unsafe production settings with one message each, before uvicorn."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app


def test_serve_refuses_the_demo_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NBO_ENVIRONMENT", "NBO_PSEUDONYM_KEY", "NBO_API_KEYS", "NBO_AUTH_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBO_AUTH_DISABLED", "true")
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert [line.split(" is ", 1)[0] for line in lines] == [
        "  - NBO_PSEUDONYM_KEY",
        "  - NBO_AUTH_DISABLED",
        "  - NBO_API_KEYS",
    ]
    assert "Traceback" not in result.output
