"""The event-loop thread's CPU in named parts of the request path, measured in flow.

Why not only cProfile: it charges a fixed cost to every Python call, so its shares rank
the parts but its microseconds are two to three times the real ones. These stopwatches
wrap a dozen functions only (a few hundred nanoseconds each), so each part's figure is
close to what it costs inside a real request - caches as cold as the request leaves them,
which is often several times what the same function costs in a tight loop.

Valid with one request in flight at a time: the stopwatch of an ``async`` part runs while
its coroutine waits, and any other request's work in that wait would count as its own.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

PARTS: tuple[tuple[str, str, str], ...] = (
    ("recommend: everything before the answer", "service.api.recommendations", "recommend"),
    ("  feature read: the EVAL through the client", "service.infra.feature_fetch", "_read"),
    ("  feature record decode", "features.online_store", "OnlineStore.decode"),
    ("  precomputed scores decode", "service.decision.recommend", "_decode_scores"),
    ("  decide: the decision", "service.decision.recommend", "decide"),
    ("  response body", "service.decision.recommend", "respond"),
    ("  pseudonym (HMAC)", "core.pseudonym", "Pseudonymiser.__call__"),
    ("recording: audit record", "service.decision.recommend", "stored_record"),
    ("recording: audit queue (JSON)", "service.infra.audit_writer", "AuditWriter.submit"),
    ("recording: metrics", "service.infra.metrics", "ServiceMetrics.observe_recorded"),
)
"""(label, module, attribute path) of each timed part; indented labels are inside the first."""


@dataclass
class PartClock:
    """Nanoseconds of thread CPU and calls per part label."""

    nanoseconds: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, spent: int) -> None:
        self.nanoseconds[label] = self.nanoseconds.get(label, 0) + spent
        self.calls[label] = self.calls.get(label, 0) + 1

    def reset(self) -> None:
        self.nanoseconds.clear()
        self.calls.clear()

    def per_request_us(self, requests: int) -> list[tuple[str, float, int]]:
        """(label, microseconds per request, calls) in :data:`PARTS` order."""
        return [
            (label, self.nanoseconds.get(label, 0) / requests / 1e3, self.calls.get(label, 0))
            for label, _, _ in PARTS
        ]


def _timed(fn: Callable[..., Any], label: str, clock: PartClock) -> Callable[..., Any]:
    thread_ns = time.thread_time_ns
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = thread_ns()
            try:
                return await fn(*args, **kwargs)
            finally:
                clock.add(label, thread_ns() - started)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = thread_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            clock.add(label, thread_ns() - started)

    return timed


@contextmanager
def timing_parts(clock: PartClock) -> Iterator[PartClock]:
    """Wrap every part of :data:`PARTS` while the block runs; restore them after."""
    restore: list[tuple[Any, str, Any]] = []
    try:
        for label, module_name, path in PARTS:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            original = inspect.getattr_static(owner, name)
            if isinstance(original, staticmethod):
                wrapped: Any = staticmethod(_timed(original.__func__, label, clock))
            else:
                wrapped = _timed(original, label, clock)
            setattr(owner, name, wrapped)
            restore.append((owner, name, original))
        yield clock
    finally:
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)
