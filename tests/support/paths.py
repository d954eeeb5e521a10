"""Where the repository is, a free loopback port, and settings whose MLflow is unreachable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_mlflow(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``settings`` with the tracking URI on a port nothing listens on, MLflow's HTTP client
    set to fail at once (no retries, 2 s timeout): an MLflow outage."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
