"""Every ``nbo`` command answers ``--help`` with an example."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        # typer may vendor its own click: recognise groups by their ``commands`` mapping.
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(root, ())
    return found


COMMANDS = _commands()


def test_expected_commands_exist() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in (
        "data import-santander",
        "data generate",
        "features materialize",
        "train recommender",
        "train churn",
        "train maturity",
        "evaluate maturity",
        "registry list",
        "registry promote",
        "demo",
        "evaluate churn",
        "score churn",
        "score recommendations",
        "events export",
        "audit export",
        "audit why",
        "mlflow ui",
    ):
        assert expected in names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "nbo")
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: nbo " in result.output
