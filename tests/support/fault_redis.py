"""A real, durable ``redis-server`` a fault test owns: it can be SIGKILLed, paused, restarted.

Started in the foreground as a child process (not daemonized) so the test holds its pid,
on a free loopback port, with the persistence the project ships
(``core.embedded_redis.REDIS_PERSISTENCE``: the append-only file, fsynced every second) or
settings the test names (``appendfsync always``, the stricter documented option). Restarted
on the same directory, it loads what the append-only file holds.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from core.embedded_redis import REDIS_PERSISTENCE, persistence_args, redis_executable
from tests.support.paths import free_port


class DurableRedis:
    """One redis-server process at a time on a fixed port and data directory."""

    def __init__(
        self, workdir: Path, port: int | None = None, persistence: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistence = persistence or REDIS_PERSISTENCE
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (loading the append-only file if there is one)."""
        assert self.process is None, "already running"
        args = [
            redis_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            *persistence_args(self.persistence),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.workdir}/redis.log")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save - only what reached the append-only file."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open and connections stay up, but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """End the server whatever its state (used at teardown)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.kill()
