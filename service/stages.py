"""Per-stage timing of one request (``nbo_request_stage_duration_seconds{stage}``)."""

from __future__ import annotations

import time

STAGES = ("feature_fetch", "scoring", "filtering", "arbitration", "recording")
"""The stages of the request path, in order; the metric's ``stage`` label values."""


class StageClock:
    """Laps of a stopwatch, added up per stage.

    ``lap(stage)`` charges the time since the previous lap (or since the clock started) to
    ``stage``; a stage lapped twice (the offers' model reasons count as ``scoring``, and a
    shadow decision runs every stage again) adds up.
    """

    __slots__ = ("_last", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def resume(self) -> None:
        """Start the next lap now: the time since the last lap is charged to no stage."""
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - self._last)
        self._last = now
