"""The service's Redis client: every round trip goes through the circuit breaker.

``GuardedRedis`` is a ``redis.Redis`` whose single commands (``GET``, ``PING``, ``EVALSHA``
of the event and audit scripts, ...) and pipeline executions pass through one
:class:`service.breaker.CircuitBreaker`. Guarding the client rather than each call site
means the request path's feature read, the audit write, event ingestion, the feature-pointer
refresh and ``/readyz`` all fail fast together while the breaker is open - and whichever
of them comes first after ``reset_seconds`` is the probe that closes it again, so the
service recovers without traffic and without a restart.

Commands queued in a pipeline are not network calls; only ``execute`` is guarded.

With a Redis Cluster URL (``redis+cluster://``) the client is a :class:`GuardedRedisCluster`
instead: the same breaker around ``redis.cluster.RedisCluster`` commands and
``ClusterPipeline.execute`` (one breaker for the whole cluster: the request path needs
the customer's node, and the pointer refresh may probe any node).
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException

from core.redis_server import (
    ClusterUnreachableError,
    RedisClient,
    is_cluster_outage,
    is_cluster_url,
    make_client,
    resolve_redis_url,
    service_client_options,
)
from core.settings import Settings
from service.breaker import BreakerOpenError, BreakerState, CircuitBreaker
from service.metrics import ServiceMetrics


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


def connect_guarded(settings: Settings, metrics: ServiceMetrics | None = None) -> GuardedClient:
    """The service's client: short timeouts (``service_client_options``), its own breaker.

    When the breaker opens, the pool's idle connections are dropped: they all lead to the
    Redis that failed, and after it comes back every request would first find a dead one.
    The breaker's state is exported as ``nbo_redis_breaker_state`` via ``metrics``.
    """
    url = resolve_redis_url(settings)
    options = service_client_options(settings)
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
