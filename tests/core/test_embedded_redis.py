"""The embedded Redis server: a real redis-server that keeps the demo's data across restarts."""

from __future__ import annotations

from pathlib import Path

import redis

from core.redis_server import start_embedded_redis, stop_embedded_redis
from tests.support.paths import free_port


def test_data_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = start_embedded_redis(port, tmp_path)
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("save")["save"] == "3600 1"  # hourly, and at shutdown
        client.set("nbo:demo:key", b"kept")
        stop_embedded_redis(port)
        url = start_embedded_redis(port, tmp_path)
        assert redis.Redis.from_url(url).get("nbo:demo:key") == b"kept"
    finally:
        stop_embedded_redis(port)


def test_start_is_idempotent(tmp_path: Path) -> None:
    port = free_port()
    try:
        first = start_embedded_redis(port, tmp_path, persist=False)
        assert start_embedded_redis(port, tmp_path, persist=False) == first
        assert redis.Redis.from_url(first).ping()
    finally:
        stop_embedded_redis(port)
