"""The maturity outflow scorer's interface, as the request path calls it.

Why a module of its own: the scorer's implementation (``core/scoring/maturity.py``) and the
request path are built in parallel; both code against this one signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol


class MaturityScorer(Protocol):
    """Scores one maturing contract of one customer."""

    def outflow_probability(
        self, record: Mapping[str, Any], contract: Mapping[str, Any], today: date
    ) -> float:
        """Calibrated probability that the contract's money leaves the bank within 30 days
        after its maturity (``record``: the customer's feature record; ``contract``: one
        object of its ``maturities`` list)."""
        ...
