"""What each pytest-xdist worker of a parallel run gets to itself: a Redis database and its
share of the cores.

``make test`` runs the suite on two workers (``-n 2``); ``pytest tests/x/test_y.py`` alone
runs in one process, where none of this applies (``PYTEST_XDIST_WORKER`` is unset).
"""

from __future__ import annotations

import os
import re

from threadpoolctl import threadpool_limits

_REDIS_URL = re.compile(r"(?P<base>[a-z+]+://[^/?#]*)(?:/(?P<db>\d*))?(?P<rest>[?#].*)?")


def worker_redis_url(url: str, worker: str | None) -> str:
    """``url`` for xdist worker ``worker`` (``gw0``, ``gw1``, ...): the database of ``url``
    (0 when it names none) plus the worker's index, so that parallel workers never share a
    database (``.ci/run``'s ``/0`` gives its workers 0 and 1). ``None`` (no xdist) leaves
    ``url`` as it is."""
    if worker is None:
        return url
    match = _REDIS_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"NBO_TEST_REDIS_URL is not a redis://host[:port][/db] URL: {url}")
    db = int(match["db"] or 0) + int(worker.removeprefix("gw"))
    return f"{match['base']}/{db}{match['rest'] or ''}"


def cores_per_worker(workers: int, cores: int) -> int:
    """Each of ``workers`` workers' share of ``cores``: at least one thread."""
    return max(1, cores // workers)


def share_the_cores(worker_count: str | None) -> int | None:
    """Limit this worker's OpenMP and BLAS thread pools to its share of the cores (at least
    one), in process (threadpoolctl: scikit-learn and numpy are loaded by then) and for the
    subprocesses it starts (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``). Returns the limit,
    or None outside xdist.

    Why: every gradient-boosting fit otherwise starts one OpenMP thread per core in each
    worker; two workers on two cores then run four busy-waiting threads, and a training-heavy
    test took four times as long as in a serial run. Thread counts change no result the tests
    check (the fits are seeded; histogram sums are per feature)."""
    if not worker_count:
        return None
    threads = cores_per_worker(int(worker_count), os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    threadpool_limits(limits=threads)
    return threads
