"""What a Redis server executed while some work ran, seen through MONITOR."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis


def monitored(node: redis.Redis, work: Callable[[], object]) -> list[dict[str, Any]]:
    """Every command ``node``'s server executed on ``node``'s database while ``work()`` ran,
    in order: redis-py's parsed MONITOR lines (``command``, ``client_type`` - ``lua`` for a
    script's own calls - ...). MONITOR shows every database of the server; the others belong
    to other clients (the parallel run's other worker has a database of its own and runs the
    same service, under the same connection names), so they are left out.

    MONITOR holds one connection of ``node``'s pool until a sentinel ECHO, sent on another
    once ``work()`` returns, comes by; raises AssertionError if it never does.
    """
    sentinel = f"nbo-sentinel-{uuid.uuid4().hex}"
    db = int(node.connection_pool.connection_kwargs.get("db") or 0)
    seen: list[dict[str, Any]] = []
    started = threading.Event()

    def watch() -> None:
        with node.monitor() as monitor:
            started.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
                if int(command["db"]) == db:
                    seen.append(command)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert started.wait(60)
    try:
        work()
    finally:
        node.echo(sentinel)
        thread.join(60)
    assert not thread.is_alive(), "MONITOR never saw the sentinel"
    return seen


def client_names(node: redis.Redis) -> dict[str, str]:
    """``CLIENT LIST`` of ``node``'s server: ``"ip:port"`` of each connection -> its name."""
    return {entry["addr"]: entry.get("name", "") for entry in node.client_list()}


def sent_by(
    seen: list[dict[str, Any]], names: dict[str, str], name_prefix: str
) -> list[dict[str, Any]]:
    """The commands of ``seen`` that connections named ``name_prefix...`` sent (a script's
    own calls, client type ``lua``, are not sent by a connection and are left out)."""
    return [
        command
        for command in seen
        if command["client_type"] != "lua"
        and names.get(f"{command['client_address']}:{command['client_port']}", "").startswith(
            name_prefix
        )
    ]


@contextmanager
def audit_held(writer: Any) -> Iterator[None]:
    """The audit writer queues but sends nothing until the block ends (its ``can_write``
    says no): what Redis sees meanwhile from the service is the request path alone."""
    can_write = writer._can_write
    writer._can_write = lambda: False
    try:
        yield
    finally:
        writer._can_write = can_write
