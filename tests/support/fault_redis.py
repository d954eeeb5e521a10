"""A real, durable ``redis-server`` a fault test owns: it can be SIGKILLed, paused, restarted.

Started in the foreground as a child process (not daemonized) so the test holds its pid,
on a free loopback port, with ``appendonly yes`` and ``appendfsync always``: Redis then
fsyncs every write to the append-only file before it replies, so whatever it acknowledged
survives a SIGKILL and is loaded again when the server restarts on the same directory.
That is the guarantee the fault tests check ("every event answered 202 is still there").
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from core.redis_server import redis_executable
from tests.support.paths import free_port


class DurableRedis:
    """One redis-server process at a time on a fixed port and data directory."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (loading the append-only file if there is one)."""
        assert self.process is None, "already running"
        args = [
            redis_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.workdir / "redis.log"),
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
        """SIGKILL: no shutdown, no final save - only what was fsynced survives."""
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
