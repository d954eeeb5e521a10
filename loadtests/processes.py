"""The local processes behind a URL, and what they spend: resident memory, CPU time.

Why CPU time: on a shared machine a maximum rate or a p99 moves with whatever else runs,
but the CPU seconds the server's processes spend per request barely do. Measured on
both targets in the same run, their ratio is the steadiest figure of how much work the
service adds to the bare Redis read - the runner reports it next to the latency figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import psutil

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def service_processes(url: str, pid: int | None = None) -> list[psutil.Process]:
    """The server's processes: ``pid`` (or whoever listens on the URL's port) + children.

    With ``uvicorn --workers N`` the supervisor binds the port and the workers inherit the
    socket, so every process holding the listening socket, and their children, serve.
    Empty when nothing local listens there (a remote URL, or another user's process).
    """
    if pid is not None:
        roots = [psutil.Process(pid)]
    else:
        parts = urlsplit(url)
        if parts.hostname not in LOCAL_HOSTS:
            return []
        port = parts.port or (443 if parts.scheme == "https" else 80)
        roots = [proc for proc in psutil.process_iter() if _listens_on(proc, port)]
    found: dict[int, psutil.Process] = {}
    for root in roots:
        for proc in [root, *root.children(recursive=True)]:
            found[proc.pid] = proc
    return [found[p] for p in sorted(found)]


def _listens_on(proc: psutil.Process, port: int) -> bool:
    try:
        connections = proc.net_connections(kind="tcp")
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
    )


def rss_mb(processes: Sequence[psutil.Process]) -> dict[str, float | None]:
    """pid -> resident set size in MiB (None once the process is gone)."""
    out: dict[str, float | None] = {}
    for proc in processes:
        try:
            out[str(proc.pid)] = round(proc.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            out[str(proc.pid)] = None
    return out


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds the processes have spent so far (gone ones count 0)."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
