"""The service's Redis client: every round trip goes through the circuit breaker.

``GuardedRedis`` is a ``redis.Redis`` whose single commands (``GET``, ``PING``, ``EVALSHA``
of the event and audit scripts, ...) and pipeline executions pass through one
:class:`service.infra.breaker.CircuitBreaker`. Guarding the client rather than each call site
means the request path's feature read, the audit write, event ingestion, the feature-pointer
refresh and ``/readyz`` all fail fast together while the breaker is open - and whichever
of them comes first after ``reset_seconds`` is the probe that closes it again, so the
service recovers without traffic and without a restart.

Commands queued in a pipeline are not network calls; only ``execute`` is guarded.

With a Redis Cluster URL (``redis+cluster://``) the client is a :class:`GuardedRedisCluster`
instead: the same breaker around ``redis.cluster.RedisCluster`` commands and
``ClusterPipeline.execute`` (one breaker for the whole cluster: the request path needs
the customer's node, and the pointer refresh may probe any node).

The request path reads through an asyncio client (:func:`connect_guarded_async`): the
route runs on the event loop with no thread hop, and its commands pass through the SAME
breaker as the synchronous client of that process, so an outage seen by either side
fails both fast.
"""

from __future__ import annotations

from typing import Any, TypeAlias, cast

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.cluster
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException

from core.redis_server import (
    ClusterUnreachableError,
    RedisClient,
    is_cluster_outage,
    is_cluster_url,
    make_client,
    parse_cluster_url,
    resolve_redis_url,
    service_client_options,
)
from core.settings import Settings
from service.infra.breaker import BreakerOpenError, BreakerState, CircuitBreaker
from service.infra.metrics import ServiceMetrics


class GuardedPipeline(Pipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return self.breaker.call(super().execute, raise_on_error)
        except BreakerOpenError:
            self.reset()  # refused before sending: drop the queued commands
            raise


class GuardedRedis(redis.Redis):
    breaker: CircuitBreaker

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.breaker.call(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        pipe = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe


def _outage_as_connection_error(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call``; redis-py's "cluster unreachable" becomes a ``redis.ConnectionError``
    (:class:`ClusterUnreachableError`), so the breaker counts it and callers that handle
    Redis errors (degraded answer, 503 for an event, audit retry) handle it too."""
    try:
        return call(*args, **kwargs)
    except RedisClusterException as exc:
        if is_cluster_outage(exc):
            raise ClusterUnreachableError(str(exc)) from exc
        raise


class GuardedClusterPipeline(ClusterPipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return self.breaker.call(_outage_as_connection_error, super().execute, raise_on_error)
        except BreakerOpenError:
            self.reset()  # refused before sending: drop the queued commands
            raise


class GuardedRedisCluster(RedisCluster):
    breaker: CircuitBreaker

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return self.breaker.call(
            _outage_as_connection_error, super().execute_command, *args, **kwargs
        )

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> GuardedClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        # ClusterPipeline's constructor takes the cluster's internals (nodes manager,
        # parsers, locks...); re-classing the pipeline it built keeps all of them.
        pipe.__class__ = GuardedClusterPipeline
        guarded = cast(GuardedClusterPipeline, pipe)
        guarded.breaker = self.breaker
        return guarded


GuardedClient = GuardedRedis | GuardedRedisCluster


def breaker_of(client: RedisClient) -> CircuitBreaker | None:
    """The circuit breaker guarding ``client``, if it is the service's guarded client."""
    breaker = getattr(client, "breaker", None)
    return breaker if isinstance(breaker, CircuitBreaker) else None


def _drop_idle_connections(client: GuardedClient) -> None:
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect(inuse_connections=False)
    else:
        client.connection_pool.disconnect(inuse_connections=False)


SERVICE_CONNECTION_NAME = "nbo-service"
"""``CLIENT SETNAME`` of the service's own connections (audit writer, events, pointer,
decisions): ``CLIENT LIST`` and MONITOR tell the service's traffic from any other client's."""

REQUEST_CONNECTION_NAME = "nbo-service-request"
"""``CLIENT SETNAME`` of the request path's asyncio connections (the one read per answer)."""


def connect_guarded(settings: Settings, metrics: ServiceMetrics | None = None) -> GuardedClient:
    """The service's client: short timeouts (``service_client_options``), its own breaker.

    When the breaker opens, the pool's idle connections are dropped: they all lead to the
    Redis that failed, and after it comes back every request would first find a dead one.
    The breaker's state is exported as ``nbo_redis_breaker_state`` via ``metrics``.
    """
    url = resolve_redis_url(settings)
    options = {**service_client_options(settings), "client_name": SERVICE_CONNECTION_NAME}
    client: GuardedClient
    if is_cluster_url(url):
        # make_client builds a plain RedisCluster; the guarded class adds the breaker.
        plain = make_client(url, **options)
        plain.__class__ = GuardedRedisCluster
        client = cast(GuardedRedisCluster, plain)
    else:
        client = cast(GuardedRedis, GuardedRedis.from_url(url, **options))

    def changed(state: BreakerState) -> None:
        if metrics is not None:
            metrics.set_breaker_state("redis", state.value)
        if state is BreakerState.OPEN:
            _drop_idle_connections(client)

    client.breaker = CircuitBreaker(
        "redis",
        settings.redis_breaker_failures,
        settings.redis_breaker_reset_seconds,
        on_change=changed,
    )
    if metrics is not None:
        metrics.set_breaker_state("redis", client.breaker.state.value)
    return client


# -- the request path's asyncio client -------------------------------------------------------


async def _outage_as_connection_error_async(call: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`_outage_as_connection_error` for a coroutine function."""
    try:
        return await call(*args, **kwargs)
    except RedisClusterException as exc:
        if is_cluster_outage(exc):
            raise ClusterUnreachableError(str(exc)) from exc
        raise


class GuardedAsyncPipeline(redis.asyncio.client.Pipeline):
    breaker: CircuitBreaker

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return await self.breaker.call_async(super().execute, raise_on_error)
        except BreakerOpenError:
            await self.reset()  # refused before sending: drop the queued commands
            raise


class GuardedAsyncRedis(redis.asyncio.Redis):
    breaker: CircuitBreaker

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.breaker.call_async(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedAsyncPipeline:
        pipe = GuardedAsyncPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe


class GuardedAsyncClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    breaker: CircuitBreaker

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return cast(
                list[Any],
                await self.breaker.call_async(
                    _outage_as_connection_error_async,
                    super().execute,
                    raise_on_error,
                    allow_redirections,
                ),
            )
        except BreakerOpenError:
            await self.reset()  # refused before sending: drop the queued commands
            raise


class GuardedAsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    breaker: CircuitBreaker

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self.breaker.call_async(
            _outage_as_connection_error_async, super().execute_command, *args, **kwargs
        )

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> GuardedAsyncClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        # As in GuardedRedisCluster.pipeline (the stubs call ClusterPipeline abstract).
        pipe.__class__ = GuardedAsyncClusterPipeline  # type: ignore[type-abstract]
        guarded = cast(GuardedAsyncClusterPipeline, pipe)
        guarded.breaker = self.breaker
        return guarded


AsyncGuardedClient: TypeAlias = GuardedAsyncRedis | GuardedAsyncRedisCluster


def connect_guarded_async(settings: Settings, breaker: CircuitBreaker) -> AsyncGuardedClient:
    """The request path's asyncio client: the service's timeouts and ``breaker``.

    Use it on one event loop only: its connections are opened lazily, on that loop.
    The same options as :func:`connect_guarded` (``service_client_options``), with
    redis-py's asyncio ``Retry``: one retry after a connection error on a single server -
    the one that finds a pooled connection dead after a Redis restart (this client's idle
    connections are not dropped when the breaker opens, the retry covers them) - none on
    a cluster.
    """
    url = resolve_redis_url(settings)
    options = {**service_client_options(settings), "client_name": REQUEST_CONNECTION_NAME}
    retries = options["retry"].get_retries()
    options["retry"] = redis.asyncio.retry.Retry(
        NoBackoff(),
        retries,
        supported_errors=(redis.ConnectionError,) if retries else (),
    )
    client: AsyncGuardedClient
    if is_cluster_url(url):
        first, others = parse_cluster_url(url)
        seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in others]
        client = cast(
            GuardedAsyncRedisCluster,
            GuardedAsyncRedisCluster.from_url(first, startup_nodes=seeds or None, **options),
        )
    else:
        client = cast(GuardedAsyncRedis, GuardedAsyncRedis.from_url(url, **options))
    client.breaker = breaker
    return client
