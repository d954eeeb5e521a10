"""Which PostgreSQL the tests use, and when they may skip for want of one.

``NBO_TEST_POSTGRES_URL`` set: that server must work (a failure fails the test). Unset: the
default (trust auth at 127.0.0.1:5432, database ``test``), and the tests skip only when
nothing listens on that port - a PostgreSQL that listens but refuses is a failure.
"""

from __future__ import annotations

import socket

import pytest

POSTGRES_URL_ENV = "NBO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5432


def listening(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def postgres_url(environ: dict[str, str]) -> str:
    """The URL to test against; skips (naming why) only when the variable is unset and
    nothing listens where the default points."""
    named = environ.get(POSTGRES_URL_ENV)
    if named:
        return named
    if not listening(DEFAULT_HOST, DEFAULT_PORT):
        pytest.skip(
            f"{POSTGRES_URL_ENV} unset and nothing listens on {DEFAULT_HOST}:{DEFAULT_PORT}"
        )
    return DEFAULT_POSTGRES_URL
