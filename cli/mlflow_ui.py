"""``nbo mlflow ui``: the MLflow UI on the project's own tracking store and registry.

It runs ``mlflow server`` against the tracking URI the jobs write to (``NBO_MLFLOW_TRACKING_URI``,
or the SQLite file under ``NBO_HOME``), so the runs, model versions and logged models the UI
shows are the ones ``nbo train`` made, with their artifacts read from the same folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import typer

from cli.errors import fail
from core.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True)

_LOCAL_SCHEMES = ("sqlite", "file")
"""Stores whose experiments keep their artifacts under NBO_HOME (``registry.client``)."""

_SERVER_SCHEMES = ("http", "https", "databricks")
"""Tracking URIs that already are a server with its own UI."""


class AlreadyAServerError(ValueError):
    """The tracking URI is a running server: open its own UI instead."""


def server_argv(settings: Settings, host: str, port: int, python: str) -> list[str]:
    """The ``mlflow server`` command line for the project's tracking store.

    On a local store (SQLite, file) new experiments (made in the UI) get their artifacts
    under NBO_HOME like the jobs' experiments (``--default-artifact-root``), and artifacts
    the server proxies (``mlflow-artifacts:`` URIs) resolve to the same folder
    (``--artifacts-destination``); the jobs' own ``file:`` artifact locations are read
    directly. One worker: it is a single user's UI on a small machine.
    """
    uri = settings.tracking_uri
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in _SERVER_SCHEMES:
        raise AlreadyAServerError(
            f"NBO_MLFLOW_TRACKING_URI is already an MLflow server ({uri}): open its UI there"
        )
    argv = [python, "-m", "mlflow", "server", "--backend-store-uri", uri]
    if scheme in _LOCAL_SCHEMES:
        argv += [
            "--default-artifact-root",
            settings.artifact_root,
            "--artifacts-destination",
            settings.artifact_root,
        ]
    return [*argv, "--host", host, "--port", str(port), "--workers", "1"]


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: ``environ`` with MLflow's job runner off unless asked for.

    The runner (a pool of background consumer processes for GenAI jobs: trace rollups,
    judges) has nothing to do for this project's models and would take its share of a
    small machine; ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true`` turns it back on.
    """
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **environ}


def ui_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches the UI (``0.0.0.0`` binds every interface)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:  # an IPv6 address
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@app.command("ui")
def ui(
    port: int = typer.Option(5000, min=1, max=65535, help="Port of the UI."),
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0: every interface)."),
) -> None:
    """Open the MLflow UI on the project's runs, models and artifacts (until Ctrl-C).

    Runs `mlflow server` on the tracking URI in force (NBO_MLFLOW_TRACKING_URI, or the
    SQLite store under NBO_HOME) and prints its URL. An NBO_MLFLOW_TRACKING_URI that is
    already an http(s) server is refused (exit code 2): its own UI is there.

    Example: nbo mlflow ui --port 5000
    """
    settings = get_settings()
    try:
        argv = server_argv(settings, host, port, sys.executable)
    except AlreadyAServerError as exc:
        raise fail(str(exc)) from None
    if settings.tracking_uri.startswith("sqlite:///"):  # a first run: no store yet
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    typer.echo(f"MLflow UI on {settings.tracking_uri}: {ui_url(host, port)} (Ctrl-C stops it)")
    sys.stdout.flush()
    _exec(argv, server_env(os.environ))


def _exec(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Become the server process, so Ctrl-C and a kill reach it directly."""
    os.execve(argv[0], list(argv), dict(env))
