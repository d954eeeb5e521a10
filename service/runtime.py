"""Everything a request needs that lives as long as the app: built once by the lifespan.

``RuntimeDep`` is the one FastAPI dependency through which routes reach it; the hot
recommendation route reads ``request.app.state.runtime`` directly instead, to keep
dependency solving off its path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from core.redis_server import RedisClient
from core.settings import Settings
from features.online_store import OnlineStore
from service.infra.audit_writer import AuditWriter
from service.infra.coalesced_reads import CoalescedReader
from service.infra.metrics import ServiceMetrics
from service.infra.model_watcher import ModelWatcher
from service.infra.state import StateHolder


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: RedisClient  # events, audit, readiness, pointer refresh (threads)
    # The request path's one read (event loop; concurrent reads share a pipeline); same breaker.
    reader: CoalescedReader
    store: OnlineStore
    state: StateHolder
    metrics: ServiceMetrics
    audit: AuditWriter  # write-behind of the decision audit trail (started by the lifespan)
    watcher: ModelWatcher  # hot reload of the model aliases (started by the lifespan)
    # The decision and event time. Production keeps the system clock; ``nbo simulate``
    # builds its own app with a simulated clock to run days in minutes.
    clock: Callable[[], datetime] = system_clock


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (set by the lifespan before the first request)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
