"""The in-flow stopwatches of ``bench_asgi --parts`` count what runs inside them and leave
the request path as it was."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import service.infra.feature_fetch as feature_fetch
from core.pseudonym import Pseudonymiser
from features.online_store import OnlineStore
from loadtests.part_clock import PARTS, PartClock, timing_parts


def test_parts_are_timed_while_wrapped_and_restored_after() -> None:
    originals = {
        "call": inspect.getattr_static(Pseudonymiser, "__call__"),
        "decode": inspect.getattr_static(OnlineStore, "decode"),
        "read": feature_fetch._read,
    }
    clock = PartClock()
    with timing_parts(clock):
        assert Pseudonymiser("key")("S1") == Pseudonymiser("key")("S1")
        assert isinstance(inspect.getattr_static(OnlineStore, "decode"), staticmethod)
        with pytest.raises(ValueError):
            OnlineStore.decode(b"not a record")  # a static method still, timed when it fails
        with pytest.raises(AssertionError):  # an async part: timed across its awaits
            asyncio.run(feature_fetch._read(object(), None, None))  # type: ignore[arg-type]
    assert clock.calls == {
        "  pseudonym (HMAC)": 2,
        "  feature record decode": 1,
        "  feature read: the EVAL through the client": 1,
    }
    assert all(ns > 0 for ns in clock.nanoseconds.values())
    assert inspect.getattr_static(Pseudonymiser, "__call__") is originals["call"]
    assert inspect.getattr_static(OnlineStore, "decode") is originals["decode"]
    assert feature_fetch._read is originals["read"]
    rows = clock.per_request_us(2)
    assert [label for label, _, _ in rows] == [label for label, _, _ in PARTS]
