"""The embedded Redis: a real redis-server that belongs to one folder, with the append-only
file the project ships (``core.embedded_redis.REDIS_PERSISTENCE``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.embedded_redis import (
    FSYNC_WINDOW_SECONDS,
    REDIS_PERSISTENCE,
    EmbeddedRedisConflictError,
    embedded_status,
    persistence_args,
    redis_executable,
    start_embedded_redis,
    stop_embedded_redis,
)
from tests.support.paths import free_port


@pytest.fixture
def port() -> Iterator[int]:
    """A free port; whatever the test left running on it is shut down afterwards."""
    chosen = free_port()
    yield chosen
    status = embedded_status(chosen)
    if status.listening and status.pid is not None:
        os.kill(status.pid, signal.SIGKILL)


def test_data_survives_a_restart_with_the_shipped_persistence(tmp_path: Path, port: int) -> None:
    url = start_embedded_redis(port, tmp_path)
    client = redis.Redis.from_url(url)
    for name, value in REDIS_PERSISTENCE.items():
        assert client.config_get(name)[name] == value
    client.set("nbo:demo:key", b"kept")
    stop_embedded_redis(port, tmp_path)
    url = start_embedded_redis(port, tmp_path)
    assert redis.Redis.from_url(url).get("nbo:demo:key") == b"kept"


def test_a_crash_loses_nothing_older_than_the_fsync_window(tmp_path: Path, port: int) -> None:
    """SIGKILL, no shutdown save: what was acknowledged more than the fsync window before
    is read back from the append-only file."""
    client = redis.Redis.from_url(start_embedded_redis(port, tmp_path))
    client.mset({f"k{i}": i for i in range(500)})
    time.sleep(FSYNC_WINDOW_SECONDS + 1.0)
    status = embedded_status(port)
    assert status.pid is not None
    os.kill(status.pid, signal.SIGKILL)
    while embedded_status(port).listening:
        time.sleep(0.05)
    client = redis.Redis.from_url(start_embedded_redis(port, tmp_path))
    assert client.dbsize() == 500


def test_start_is_idempotent(tmp_path: Path, port: int) -> None:
    first = start_embedded_redis(port, tmp_path, persist=False)
    assert start_embedded_redis(port, tmp_path, persist=False) == first
    assert redis.Redis.from_url(first).ping()


def test_another_homes_redis_is_refused_and_named(tmp_path: Path, port: int) -> None:
    """Issue #27: a second checkout silently used the first one's Redis (and data)."""
    mine, theirs = tmp_path / "mine" / "redis", tmp_path / "theirs" / "redis"
    start_embedded_redis(port, theirs)
    with pytest.raises(EmbeddedRedisConflictError) as refused:
        start_embedded_redis(port, mine)
    message = str(refused.value)
    assert str(theirs.parent) in message and "NBO_EMBEDDED_REDIS_PORT" in message
    with pytest.raises(EmbeddedRedisConflictError):
        stop_embedded_redis(port, mine)  # not ours to stop
    assert embedded_status(port).owned_by(theirs)


def test_a_redis_whose_folder_was_deleted_is_refused_then_stopped(
    tmp_path: Path, port: int
) -> None:
    folder = tmp_path / "home" / "redis"
    redis.Redis.from_url(start_embedded_redis(port, folder)).set("k", b"v")
    time.sleep(FSYNC_WINDOW_SECONDS)  # settled: the folder goes while it serves, not starts
    shutil.rmtree(folder)
    folder.mkdir(parents=True)  # a new folder of the same name is not the server's
    with pytest.raises(EmbeddedRedisConflictError, match="deleted"):
        start_embedded_redis(port, folder)
    assert stop_embedded_redis(port, folder).listening
    deadline = time.monotonic() + 60
    while embedded_status(port).listening:
        assert time.monotonic() < deadline, "the orphaned server did not stop"
        time.sleep(0.05)
    assert redis.Redis.from_url(start_embedded_redis(port, folder)).ping()


def test_something_else_on_the_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        busy = listener.getsockname()[1]
        with pytest.raises(EmbeddedRedisConflictError, match="not a Redis"):
            start_embedded_redis(busy, tmp_path)


def test_a_snapshot_of_an_older_release_is_kept_when_the_append_only_file_starts(
    tmp_path: Path, port: int
) -> None:
    """Started with ``appendonly yes`` on a folder holding only a snapshot, Redis would
    load the (absent) append-only file and come up empty."""
    old = redis.Redis(port=port)
    args = [redis_executable(), "--port", str(port), "--dir", str(tmp_path), "--daemonize",
            "yes", "--dbfilename", "nbo.rdb", *persistence_args({"appendonly": "no"})]  # fmt: skip
    os.spawnv(os.P_WAIT, args[0], args)
    while not embedded_status(port).listening:
        time.sleep(0.05)
    old.set("from:the:old:release", b"1")
    old.shutdown(save=True)  # the older release's snapshot at shutdown
    client = redis.Redis.from_url(start_embedded_redis(port, tmp_path))
    assert client.get("from:the:old:release") == b"1"
    assert client.config_get("appendonly")["appendonly"] == "yes"
