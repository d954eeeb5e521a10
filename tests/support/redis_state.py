"""What a Redis holds under a test's prefix: to prove that a refused request changed nothing,
and to delete it afterwards."""

from __future__ import annotations

import time

import redis


def redis_snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key under ``prefix`` with its serialized value (``DUMP``): equal = unchanged.

    Taken once it stops changing: decisions reach the audit trail through a write-behind
    queue, a moment after their answer.
    """
    previous: dict[bytes, bytes | None] | None = None
    deadline = time.monotonic() + 10
    while True:
        current = {key: client.dump(key) for key in sorted(client.scan_iter(match=f"{prefix}*"))}
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(0.3)


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own namespace, after the test)."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
