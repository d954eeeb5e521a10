"""Redis connections: every client of the project, to a configured or the embedded Redis.

``NBO_REDIS_URL`` is either a plain redis-py URL (``redis://``, ``rediss://``,
``unix://``: one server) or a Redis Cluster URL: the same with ``+cluster`` in the scheme
and one or more seed nodes, ``redis+cluster://[user:password@]host:port[,host:port...]/``
(``rediss+cluster://`` for TLS; database 0 only, query options as for ``redis://``).
Every client of the project is built here (:func:`make_client`), so a cluster URL gives
every job, CLI command and the service a ``redis.cluster.RedisCluster`` with the same
timeouts. The key layout (hash tags, docs/operations.md "Redis Cluster") keeps every multi-key
operation inside one slot.

Without a URL the embedded server of ``NBO_HOME`` is used (``core.embedded_redis``: a
real ``redis-server`` on loopback TCP, started on first use).
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from core.embedded_redis import start_embedded_redis
from core.settings import Settings

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""What :func:`connect` returns: one server's client, or a Redis Cluster client."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""Cluster URL schemes and the plain scheme each seed node is reached with."""


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


def resolve_redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's (started on first use; raises
    ``core.embedded_redis.RedisUnavailableError`` when it cannot start, or
    ``EmbeddedRedisConflictError`` when its port is taken by a server of another home)."""
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
