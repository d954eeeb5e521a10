"""Count what Redis did during a load phase (``INFO commandstats`` before and after).

Reading the counters does not reset them (no ``CONFIG RESETSTAT``), so other readers of
the same server are not disturbed; the phase's share is the difference.
"""

from __future__ import annotations

from typing import Any

import redis


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Command name -> calls since the server started (or its stats were last reset)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands called between two snapshots (zero counts left out)."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


def per_request(delta: dict[str, int], requests: int) -> dict[str, float]:
    """Calls of each command per request made (3 decimals)."""
    if requests <= 0:
        return {}
    return {name: round(calls / requests, 3) for name, calls in delta.items()}
