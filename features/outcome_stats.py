"""Intervals of the outcomes report: Wilson score interval of a rate, Newcombe's interval
of the difference of two rates.

Why these: both stay inside [0, 1] (resp. [-1, 1]) and keep their coverage for small
counts and rates near 0 or 1, where the normal approximation of a take-up rate of a few
percent fails (Newcombe 1998, "Interval estimation for the difference between independent
proportions", method 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval."""

    estimate: float
    low: float
    high: float

    def as_record(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def wilson(successes: int, trials: int, z: float = Z95) -> Interval | None:
    """Wilson score interval of ``successes / trials``; None when ``trials`` is 0."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"wilson: need 0 <= successes ({successes}) <= trials ({trials})")
    if trials == 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe_difference(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = Z95
) -> Interval | None:
    """Interval of rate(a) - rate(b) from the two Wilson intervals (Newcombe's method 10).

    None when either side has no trials.
    """
    a = wilson(successes_a, trials_a, z)
    b = wilson(successes_b, trials_b, z)
    if a is None or b is None:
        return None
    diff = a.estimate - b.estimate
    low = diff - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = diff + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(diff, low, high)
