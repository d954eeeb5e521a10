"""Count what Redis did during a load phase (``INFO commandstats`` and ``INFO cpu`` before
and after).

Why Redis's CPU too: both targets read the same Redis, but the service also writes its
audit trail there, so the server's processes are not the whole cost of a request.

Reading the counters does not reset them (no ``CONFIG RESETSTAT``), so other readers of
the same server are not disturbed; the phase's share is the difference.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from redis.cluster import RedisCluster

from core.redis_server import RedisClient


def command_calls(client: RedisClient) -> dict[str, int]:
    """Command name -> calls since the server started (or its stats were last reset).

    On a Redis Cluster: summed over every node.
    """
    total: Counter[str] = Counter()
    for stats in _sections(client, "commandstats"):
        total.update(_calls(stats))
    return dict(total)


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def redis_cpu_seconds(client: RedisClient) -> float:
    """User + system CPU seconds the Redis server has spent (its threads included), summed
    over every node of a cluster."""
    return sum(_cpu(stats) for stats in _sections(client, "cpu"))


def _sections(client: RedisClient, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of the server, or of every node of a cluster."""
    if isinstance(client, RedisCluster):
        per_node: dict[str, dict[str, Any]] = client.info(
            section, target_nodes=RedisCluster.ALL_NODES
        )
        return list(per_node.values())
    return [client.info(section)]


def _cpu(stats: dict[str, Any]) -> float:
    return float(stats["used_cpu_sys"]) + float(stats["used_cpu_user"])


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands called between two snapshots (zero counts left out)."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


def per_request(delta: dict[str, int], requests: int) -> dict[str, float]:
    """Calls of each command per request made (3 decimals)."""
    if requests <= 0:
        return {}
    return {name: round(calls / requests, 3) for name, calls in delta.items()}
