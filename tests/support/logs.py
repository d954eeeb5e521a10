"""Everything the service and uvicorn log during a block, as text (tracebacks included)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from service.infra.log import LOGGER_NAME, JsonFormatter

WATCHED = ("", LOGGER_NAME, "uvicorn", "uvicorn.error", "fastapi")
"""The root logger, the service's (which does not propagate) and the servers'."""


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """A buffer receiving every record of :data:`WATCHED` at DEBUG and above, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in WATCHED]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
