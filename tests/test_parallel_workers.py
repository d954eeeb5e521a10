"""The parallel run's split of shared resources (``tests.support.workers``): each xdist
worker its own Redis database and its share of the cores, and a MONITOR that sees only its
own database."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from threadpoolctl import threadpool_info

from tests.support.redis_monitor import monitored
from tests.support.workers import cores_per_worker, share_the_cores, worker_redis_url


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379/5", "gw0", "redis://127.0.0.1:6379/5"),
        ("redis://127.0.0.1:6379/5", "gw1", "redis://127.0.0.1:6379/6"),
        ("redis://127.0.0.1:6379/0", "gw1", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379", "gw1", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379/", "gw0", "redis://127.0.0.1:6379/0"),
        ("redis://u:p%40w@host:7000/3?socket_timeout=5", "gw2", "redis://u:p%40w@host:7000/5?socket_timeout=5"),
        ("rediss://host:6380/2", "gw1", "rediss://host:6380/3"),
        ("redis://127.0.0.1:6379/5", None, "redis://127.0.0.1:6379/5"),
    ],
)  # fmt: skip
def test_each_worker_gets_the_url_database_plus_its_index(
    url: str, worker: str | None, expected: str
) -> None:
    assert worker_redis_url(url, worker) == expected


def test_a_url_that_is_not_a_redis_url_is_refused() -> None:
    with pytest.raises(ValueError, match="NBO_TEST_REDIS_URL"):
        worker_redis_url("127.0.0.1:6379/5", "gw1")


def test_this_worker_uses_the_database_it_was_given(redis_url: str) -> None:
    """With ``NBO_TEST_REDIS_URL`` the server reports, for this worker's connection, the
    URL's database plus the worker's index (the URL's own in a serial run)."""
    external = os.environ.get("NBO_TEST_REDIS_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    client = redis.Redis.from_url(redis_url)
    try:
        db = int(client.client_info()["db"])
    finally:
        client.close()
    if not external:
        assert db == 0  # each worker's own embedded server, its default database
        return
    base = int(external.rstrip("/").rsplit("/", 1)[1]) if external.count("/") > 2 else 0
    assert db == base + (int(worker.removeprefix("gw")) if worker else 0)


@pytest.mark.parametrize(
    ("workers", "cores", "share"), [(2, 2, 1), (2, 8, 4), (3, 8, 2), (4, 2, 1), (1, 2, 2)]
)
def test_a_worker_gets_its_share_of_the_cores_and_at_least_one(
    workers: int, cores: int, share: int
) -> None:
    assert cores_per_worker(workers, cores) == share


def test_this_processs_thread_pools_hold_to_the_worker_share() -> None:
    """In an xdist worker the OpenMP and BLAS pools were limited at start-up (the root
    conftest's ``pytest_configure``), for this process and its subprocesses; a serial run
    leaves them alone."""
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not count:
        assert share_the_cores(None) is None
        return
    share = cores_per_worker(int(count), os.cpu_count() or 1)
    assert os.environ["OMP_NUM_THREADS"] == str(share)
    pools = [pool for pool in threadpool_info() if pool["internal_api"] in ("openmp", "openblas")]
    assert pools and all(pool["num_threads"] <= share for pool in pools)


def test_monitor_sees_only_the_commands_on_its_own_database(redis_url: str) -> None:
    """MONITOR shows the whole server; ``monitored`` keeps the watcher's database, where the
    parallel run's other worker (same service, same connection names) has its own. An ECHO
    (it writes nothing) on the next database is left out, the same ECHO on this one kept."""
    marker = f"nbo-other-db-{uuid.uuid4().hex}"
    with redis.Redis.from_url(redis_url) as watcher:
        kwargs = watcher.connection_pool.connection_kwargs
        next_db = (int(kwargs.get("db") or 0) + 1) % 16
        pool = redis.ConnectionPool(**{**kwargs, "db": next_db})
        with redis.Redis(connection_pool=pool) as other:

            def work() -> None:
                other.echo(marker)
                watcher.echo(f"{marker}-here")

            seen = monitored(watcher, work)
    echoed = [c["command"] for c in seen if marker in c["command"]]
    assert echoed == [f"ECHO {marker}-here"], echoed
