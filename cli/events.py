"""``nbo events``: export the feedback events for retraining."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import redis
import typer

from cli.errors import exit_on
from core.embedded_redis import RedisUnavailableError
from core.redis_server import connect
from core.settings import get_settings
from features.events_export import export_events

app = typer.Typer(no_args_is_help=True)


def parse_day(option: str, text: str) -> datetime:
    """``2026-10-31`` -> midnight UTC of that day."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date like 2026-10-31") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@app.command("export")
def export(
    since: str = typer.Option(..., "--since", help="First event date (YYYY-MM-DD, UTC)."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (replaced atomically)."),
) -> None:
    """Write the shown / clicked / accepted / declined events since a date to Parquet.

    Customers appear by their pseudonymous id (keyed with NBO_PSEUDONYM_KEY).

    Example: nbo events export --since 2026-10-01 --out var/events.parquet
    """
    settings = get_settings()
    with exit_on(ValueError, OSError, redis.RedisError, RedisUnavailableError):
        start = parse_day("--since", since)
        written = export_events(
            connect(settings),
            settings.events_prefix,
            start,
            out,
            settings.event_future_tolerance_seconds,
        )
    typer.echo(f"{written} events since {start:%Y-%m-%d} -> {out}")
