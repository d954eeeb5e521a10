"""What a Redis server executed while some work ran, seen through MONITOR."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis


def monitored(node: redis.Redis, work: Callable[[], object]) -> list[dict[str, Any]]:
    """Every command ``node``'s server executed while ``work()`` ran, in order: redis-py's
    parsed MONITOR lines (``command``, ``client_type`` - ``lua`` for a script's own calls -
    ...).

    MONITOR holds one connection of ``node``'s pool until a sentinel ECHO, sent on another
    once ``work()`` returns, comes by; raises AssertionError if it never does.
    """
    sentinel = f"nbo-sentinel-{uuid.uuid4().hex}"
    seen: list[dict[str, Any]] = []
    started = threading.Event()

    def watch() -> None:
        with node.monitor() as monitor:
            started.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
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
