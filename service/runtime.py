"""Everything a request needs that lives as long as the app: built once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from core.redis_server import RedisClient
from core.settings import Settings
from features.online_store import OnlineStore
from service.audit_writer import AuditWriter
from service.feature_fetch import AsyncRedisClient
from service.metrics import ServiceMetrics
from service.state import StateHolder


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: RedisClient  # events, audit, readiness, pointer refresh (threads)
    reader: AsyncRedisClient  # the request path's one read (event loop); same breaker
    store: OnlineStore
    state: StateHolder
    metrics: ServiceMetrics
    audit: AuditWriter  # write-behind of the decision audit trail (started by the lifespan)
