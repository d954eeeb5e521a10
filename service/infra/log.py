"""Structured log lines: one JSON object per line, fields passed with ``extra=fields(...)``.

Privacy rule: customer ids, names and feature values never go into a log line; a request is
identified by its ``request_id`` (also returned to the caller and recorded with the decision).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

LOGGER_NAME = "service"
_HANDLER_MARK = "_nbo_json_handler"


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra=`` argument carrying structured fields, e.g. ``log.info("x", extra=fields(a=1))``."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...fields}`` as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str) -> None:
    """Send the ``service`` loggers to stderr as JSON lines (idempotent).

    The loggers do not propagate to the root logger, so a host application's handlers do
    not print every line a second time in another format.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level.upper())
    if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        setattr(handler, _HANDLER_MARK, True)
        logger.addHandler(handler)
    logger.propagate = False
