"""Run the baseline app (``loadtests.baseline_app``) under uvicorn for one load run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 120.0  # a busy 2-core host took over 30 s to start 2 workers
STOP_TIMEOUT_SECONDS = 10.0


class BaselineError(RuntimeError):
    """The baseline app did not start; the message quotes the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def baseline_server(workers: int, redis_url: str | None) -> Iterator[str]:
    """Start the baseline with ``workers`` uvicorn workers on a free loopback port.

    Yields its base URL; stops it (SIGTERM, then SIGKILL after a grace period) on exit.
    Redis comes from the inherited ``NBO_*`` environment unless ``redis_url`` is given.
    """
    port = free_port()
    env = dict(os.environ)
    if redis_url:
        env["NBO_REDIS_URL"] = redis_url
    command = [
        sys.executable, "-m", "uvicorn", "loadtests.baseline_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log", "--timeout-worker-healthcheck", "30",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="nbo-baseline-") as tmp:
        log_path = Path(tmp) / "baseline.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file)
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_until_healthy(url, process, log_path)
                yield url
            finally:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT_SECONDS)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BaselineError(f"baseline app exited at start:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BaselineError(
        f"baseline app not healthy after {START_TIMEOUT_SECONDS:.0f} s:\n{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
