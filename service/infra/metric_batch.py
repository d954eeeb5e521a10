"""Counter increments and histogram observations added up in the process, written in batches.

Why: with several workers prometheus-client runs in multiprocess mode, where every ``inc``
and every ``observe`` of a labelled child writes its value to an mmap file (a lock, a pid
check, a struct pack; an observation writes two values: its bucket and the sum). A
recommendation makes about twenty of them. :class:`MetricBatch` keeps them in plain Python
structures instead - per counter child the summed increment, per histogram child the
count of each bucket and the sum - and :meth:`MetricBatch.flush` applies them: one write
per counter child touched, and per histogram child touched one per bucket that was hit
plus one for the sum. A flush costs O(children touched), however many observations there
were. The service flushes periodically, right before ``/metrics`` renders and at shutdown
(``service.infra.metrics.ServiceMetrics``).

prometheus-client has no public "observe many": :func:`add_observations` writes a
histogram child's private ``_buckets`` (per-bucket, not cumulative, values) and ``_sum``
and reads its ``_upper_bounds``. tests/service/infra/test_metric_batch.py compares the
exposition text of a batched registry with one fed by plain ``observe()`` calls, in
single-process and multiprocess mode, so an upgrade that changes those internals fails
there. The exposed sum can differ from plain ``observe()`` calls by float rounding only
(the batch's sum is added once).

Thread-safe: observations may come from the event loop, the audit writer thread and the
thread that renders ``/metrics``; one lock guards the pending values (held for a dict
update per observation, and for a swap per flush), another makes flushes one at a time, so
that a flush returns only once everything observed before it is written.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any, Protocol

Counted = tuple[Mapping[Any, Any], Callable[[Any], Any], Iterable[Any]]
"""``(children, label, items)``: one increment of ``children[label(item)]`` for each item.

Handed to :meth:`MetricBatch.add` as it is (a tuple, no counting per call) and counted at
the flush over every call since the last one: e.g. a recommendation's exclusions by rule,
a dozen or more per request, counted by one ``Counter`` a second instead of a dict update
each (``ServiceMetrics.observe_recorded``). ``items`` must not change once handed over;
``children`` makes a child on first use of a key (``Children``)."""


COUNTED_MAX = 4096
"""Pending :data:`Counted` calls beyond which they are counted at once (bounds the memory
they hold where nothing flushes for a while)."""


class MetricWrites(Protocol):
    """Where ``ServiceMetrics`` sends its per-request observations: batched or direct."""

    def inc(self, child: Any, amount: float = 1) -> None: ...

    def observe(self, child: Any, value: float) -> None: ...

    def inc_each(self, increments: Iterable[tuple[Any, float]]) -> None: ...

    def observe_each(self, observations: Iterable[tuple[Any, float]]) -> None: ...

    def add(
        self,
        increments: Iterable[tuple[Any, float]],
        observations: Iterable[tuple[Any, float]],
        counted: Counted | None = None,
    ) -> None: ...

    def flush(self) -> int: ...


class DirectWrites:
    """Every call written at once, with the public ``inc``/``observe`` (the reference)."""

    def inc(self, child: Any, amount: float = 1) -> None:
        child.inc(amount)

    def observe(self, child: Any, value: float) -> None:
        child.observe(value)

    def inc_each(self, increments: Iterable[tuple[Any, float]]) -> None:
        for child, amount in increments:
            child.inc(amount)

    def observe_each(self, observations: Iterable[tuple[Any, float]]) -> None:
        for child, value in observations:
            child.observe(value)

    def add(
        self,
        increments: Iterable[tuple[Any, float]],
        observations: Iterable[tuple[Any, float]],
        counted: Counted | None = None,
    ) -> None:
        self.inc_each(increments)
        self.observe_each(observations)
        if counted is not None:
            children, label, items = counted
            for item in items:
                children[label(item)].inc()

    def flush(self) -> int:
        """Nothing pending: 0 children written."""
        return 0


class HistogramTally:
    """Observations of one histogram child since the last flush: per bucket and the sum.

    ``counts`` has one slot per upper bound (the last bound is +Inf) and one more for NaN,
    which prometheus-client counts in no bucket (but adds to the sum).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0


class MetricBatch:
    """Pending counter increments and histogram observations of prometheus-client children.

    ``child``: a labelled child (``metric.labels(...)``) or an unlabelled metric; counters
    get ``inc``, histograms ``observe``. Amounts are not checked here: the callers pass
    counts and durations (a negative counter increment would raise at the flush).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._increments: dict[Any, float] = {}
        self._observations: dict[Any, HistogramTally] = {}
        self._counted: list[Counted] = []

    def inc(self, child: Any, amount: float = 1) -> None:
        with self._lock:
            self._increments[child] = self._increments.get(child, 0) + amount

    def observe(self, child: Any, value: float) -> None:
        self.observe_each(((child, value),))

    def inc_each(self, increments: Iterable[tuple[Any, float]]) -> None:
        """Several :meth:`inc` under one hold of the lock."""
        with self._lock:
            self._add_increments(increments)

    def observe_each(self, observations: Iterable[tuple[Any, float]]) -> None:
        """Several :meth:`observe` under one hold of the lock."""
        with self._lock:
            self._add_observations(observations)

    def add(
        self,
        increments: Iterable[tuple[Any, float]],
        observations: Iterable[tuple[Any, float]],
        counted: Counted | None = None,
    ) -> None:
        """:meth:`inc_each` and :meth:`observe_each` under one hold of the lock (one
        recommendation's metrics: ``ServiceMetrics.observe_recorded``), and ``counted``
        kept as it is, to be counted at the flush (:data:`Counted`)."""
        with self._lock:
            self._add_increments(increments)
            self._add_observations(observations)
            if counted is not None:
                self._counted.append(counted)
                if len(self._counted) >= COUNTED_MAX:  # no flush for a while: fold them in
                    _count_into(self._increments, self._counted)
                    self._counted = []

    def _add_increments(self, increments: Iterable[tuple[Any, float]]) -> None:
        pending = self._increments
        for child, amount in increments:
            pending[child] = pending.get(child, 0) + amount

    def _add_observations(self, observations: Iterable[tuple[Any, float]]) -> None:
        pending = self._observations
        for child, value in observations:
            tally = pending.get(child)
            if tally is None:
                tally = pending[child] = HistogramTally(child._upper_bounds)
            # The first bound >= value: prometheus-client's bucket (``value <= bound``).
            index = bisect_left(tally.bounds, value) if value == value else len(tally.bounds)
            tally.counts[index] += 1
            tally.total += value

    def flush(self) -> int:
        """Write everything pending into the children; the number of children written."""
        with self._flushing:
            with self._lock:
                increments, self._increments = self._increments, {}
                observations, self._observations = self._observations, {}
                counted, self._counted = self._counted, []
            _count_into(increments, counted)
            for child, amount in increments.items():
                child.inc(amount)
            for child, tally in observations.items():
                add_observations(child, tally)
            return len(increments) + len(observations)


def _count_into(increments: dict[Any, float], counted: list[Counted]) -> None:
    """Add ``counted``'s items to ``increments``: one ``Counter`` (C-level counting) per
    (children, label) over every call's items since the last flush."""
    groups: dict[tuple[int, Any], tuple[Any, Callable[[Any], Any], list[Iterable[Any]]]] = {}
    for children, label, items in counted:
        group = groups.get((id(children), label))
        if group is None:
            groups[id(children), label] = (children, label, [items])
        else:
            group[2].append(items)
    for children, label, lists in groups.values():
        for key, count in Counter(map(label, chain.from_iterable(lists))).items():
            child = children[key]
            increments[child] = increments.get(child, 0) + count


def add_observations(child: Any, tally: HistogramTally) -> None:
    """Add ``tally`` to a prometheus-client histogram child: one value write per bucket hit,
    one for the sum (what as many ``child.observe(v)`` calls would have added)."""
    buckets = child._buckets
    counts = tally.counts
    for index in range(len(buckets)):
        if counts[index]:
            buckets[index].inc(counts[index])
    child._sum.inc(tally.total)


class ChildObserver:
    """``observe(value)`` of one histogram child through ``writes``: what a caller that
    takes any object with ``observe`` (``service.infra.feature_fetch``) is handed."""

    __slots__ = ("_child", "_writes")

    def __init__(self, child: Any, writes: MetricWrites) -> None:
        self._child = child
        self._writes = writes

    def observe(self, amount: float) -> None:
        self._writes.observe(self._child, amount)


class Children(dict[Any, Any]):
    """A labelled metric's children by label value (one label) or tuple of values, each
    made by ``metric.labels`` on first use and kept: ``labels`` checks and locks on every
    call, a dict lookup does not. For bounded label values only (as the series are)."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: Any) -> Any:
        child = self[key] = (
            self.metric.labels(*key) if isinstance(key, tuple) else self.metric.labels(key)
        )
        return child
