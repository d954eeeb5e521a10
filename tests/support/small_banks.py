"""The small synthetic banks that a local test and its Spark twin share, so both run on the
same data (``tests/features/conftest.py``, ``tests/training/conftest.py``)."""

from __future__ import annotations

from datetime import date

AS_OF = date(2025, 12, 31)
"""The banks' last month, and the as-of date the tests compute features for."""
PARTITIONS = 3
"""Partitions the partitioned layouts are written with."""
