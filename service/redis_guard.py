"""The service's Redis client: every round trip goes through the circuit breaker.

``GuardedRedis`` is a ``redis.Redis`` whose single commands (``GET``, ``PING``, ``EVALSHA``
of the event and audit scripts, ...) and pipeline executions pass through one
:class:`service.breaker.CircuitBreaker`. Guarding the client rather than each call site
means the request path's feature read, the audit write, event ingestion, the feature-pointer
refresh and ``/readyz`` all fail fast together while the breaker is open - and whichever
of them comes first after ``reset_seconds`` is the probe that closes it again, so the
service recovers without traffic and without a restart.

Commands queued in a pipeline are not network calls; only ``execute`` is guarded.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.client import Pipeline

from core.redis_server import resolve_redis_url, service_client_options
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


def connect_guarded(settings: Settings, metrics: ServiceMetrics | None = None) -> GuardedRedis:
    """The service's client: short timeouts (``service_client_options``), its own breaker.

    When the breaker opens, the pool's idle connections are dropped: they all lead to the
    Redis that failed, and after it comes back every request would first find a dead one.
    The breaker's state is exported as ``nbo_redis_breaker_state`` via ``metrics``.
    """
    url = resolve_redis_url(settings)
    client = cast(GuardedRedis, GuardedRedis.from_url(url, **service_client_options(settings)))

    def changed(state: BreakerState) -> None:
        if metrics is not None:
            metrics.set_breaker_state("redis", state.value)
        if state is BreakerState.OPEN:
            client.connection_pool.disconnect(inuse_connections=False)

    client.breaker = CircuitBreaker(
        "redis",
        settings.redis_breaker_failures,
        settings.redis_breaker_reset_seconds,
        on_change=changed,
    )
    if metrics is not None:
        metrics.set_breaker_state("redis", client.breaker.state.value)
    return client
