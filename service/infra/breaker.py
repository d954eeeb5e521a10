"""A circuit breaker for the service's Redis calls: fail fast while Redis is down or slow.

States (one breaker per process - every uvicorn worker learns about an outage from its own
first failures and recovers on its own):

* **closed** - calls go through. ``failure_threshold`` consecutive *transport* failures
  (connection refused or reset, connect or read timeout) open the breaker. A reply from
  Redis, even an error reply (a script error, a wrong type), counts as Redis being up.
* **open** - every call fails at once with :class:`BreakerOpenError`, without touching the
  network, for ``reset_seconds``. Callers already treat it like any Redis connection error
  (it subclasses ``redis.ConnectionError``): the request path answers the degraded
  fallback, the audit write is skipped, an event gets 503.
* **half-open** - after ``reset_seconds`` exactly one call (the probe) goes through while
  the others still fail fast; its success closes the breaker, its failure re-opens it for
  another ``reset_seconds``. A probe that never reports back is superseded after
  ``reset_seconds``, so a lost thread cannot keep the breaker half-open for ever.

Not ``pybreaker``: its ``CircuitBreaker.call`` holds one lock for the whole guarded call,
which would serialise a worker's Redis round trips behind each other's timeouts. Here the
lock only guards the few lines of each state change; the calls themselves run concurrently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import ParamSpec, TypeVar

import redis

from service.infra.log import fields

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class BreakerOpenError(redis.ConnectionError):
    """Refused without calling Redis: the breaker is open (or a probe is in flight)."""

    def __init__(self, name: str, retry_after_seconds: float) -> None:
        super().__init__(f"{name} circuit breaker open; retry in {retry_after_seconds:.1f} s")
        self.retry_after_seconds = retry_after_seconds


def is_outage(exc: BaseException) -> bool:
    """A failure that says Redis is unreachable or too slow (not an error reply)."""
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(
        exc, BreakerOpenError
    )


class CircuitBreaker:
    """Thread-safe breaker; see the module docstring. ``clock`` is for tests."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_seconds: float,
        *,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_seconds <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_seconds > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    # -- reading ------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    def is_open(self) -> bool:
        """True while calls are refused or only a probe is let through (open or half-open)."""
        return self._state is not BreakerState.CLOSED

    def retry_after(self) -> float:
        """Seconds until the next probe may go (0 when closed): a ``Retry-After`` hint."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.reset_seconds - self._clock())

    # -- calling ------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` if the breaker lets it through; records the outcome."""
        probe = self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record_failure(exc, probe)
            raise
        self._succeeded()
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`call` for a coroutine function (the request path's asyncio client).

        The state is shared with the synchronous calls of the same process: an outage
        seen by either side opens the breaker for both.
        """
        probe = self._admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:  # a cancelled request, too: not Redis' fault
            self._record_failure(exc, probe)
            raise
        self._succeeded()
        return result

    def _record_failure(self, exc: BaseException, probe: bool) -> None:
        if is_outage(exc):
            self._failed()
        elif isinstance(exc, redis.RedisError):
            self._succeeded()  # Redis answered, with an error: it is up
        elif probe:
            self._release_probe()  # not Redis' fault: let the next call probe

    def _admit(self) -> bool:
        """Let a call through (True when it is the probe) or raise :class:`BreakerOpenError`."""
        if self._state is BreakerState.CLOSED:  # the hot path takes no lock
            return False
        with self._lock:
            now = self._clock()
            if self._state is BreakerState.CLOSED:
                return False
            due = self._opened_at + self.reset_seconds
            probe_lost = (
                self._probe_started is not None and now - self._probe_started >= self.reset_seconds
            )
            if (self._state is BreakerState.OPEN and now >= due) or probe_lost:
                self._probe_started = now
                self._change(BreakerState.HALF_OPEN)
                return True
            raise BreakerOpenError(self.name, max(0.0, due - now))

    def _succeeded(self) -> None:
        if self._state is BreakerState.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._probe_started = None
            if self._state is not BreakerState.CLOSED:
                self._change(BreakerState.CLOSED)

    def _failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._probe_started = None
                self._change(BreakerState.OPEN)

    def _release_probe(self) -> None:
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._probe_started = None
                self._opened_at = self._clock() - self.reset_seconds  # probe again at once
                self._change(BreakerState.OPEN)

    def _change(self, state: BreakerState) -> None:
        """Switch state (lock held): logged once per transition, without any identifier."""
        if state is self._state:
            return
        previous, self._state = self._state, state
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker state changed",
            extra=fields(breaker=self.name, previous=previous.value, state=state.value),
        )
        if self._on_change is not None:
            self._on_change(state)
