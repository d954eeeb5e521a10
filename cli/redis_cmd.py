"""``nbo redis``: the embedded Redis server used when ``NBO_REDIS_URL`` is unset, and the
one-off renaming of keys written before Redis Cluster support."""

from __future__ import annotations

import redis
import typer

from cli.errors import exit_on
from cli.key_migration import migrate_legacy_keys
from core.embedded_redis import (
    EmbeddedRedisConflictError,
    EmbeddedStatus,
    RedisUnavailableError,
    conflict_message,
    embedded_status,
    start_embedded_redis,
    stop_embedded_redis,
)
from core.redis_server import connect
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True)

EXIT_NOT_RUNNING = 1
EXIT_OTHER_HOME = 2


def _describe(status: EmbeddedStatus) -> str:
    """``home ... (data ..., pid N, appendonly yes, appendfsync everysec)``."""
    persistence = ", ".join(f"{k} {v}" for k, v in (status.persistence or {}).items())
    return f"home {status.home} (data {status.folder}, pid {status.pid}, {persistence})"


@app.command("start")
def start() -> None:
    """Start this NBO_HOME's embedded Redis (or find it running); print its URL and home.

    Refuses (exit code 2) when the port is taken by the Redis of another home. A no-op
    when NBO_REDIS_URL names an external Redis.

    Example: nbo redis start
    """
    settings = get_settings()
    if settings.redis_url:
        typer.echo("NBO_REDIS_URL is set: the project uses an external Redis", err=True)
        return
    with exit_on(RedisUnavailableError):
        url = start_embedded_redis(settings.embedded_redis_port, settings.redis_dir)
    typer.echo(url)
    typer.echo(_describe(embedded_status(settings.embedded_redis_port)), err=True)


@app.command("stop")
def stop() -> None:
    """Stop this NBO_HOME's embedded Redis (it saves its data under NBO_HOME/redis).

    Refuses (exit code 2) to stop the Redis of another home.

    Example: nbo redis stop
    """
    settings = get_settings()
    if settings.redis_url:
        typer.echo("NBO_REDIS_URL is set: not stopping an external server", err=True)
        raise typer.Exit(EXIT_OTHER_HOME)
    with exit_on(EmbeddedRedisConflictError):
        status = stop_embedded_redis(settings.embedded_redis_port, settings.redis_dir)
    typer.echo(f"stopped: {_describe(status)}" if status.listening else "not running")


@app.command("status")
def status() -> None:
    """Say what runs on the embedded Redis port and which home it belongs to.

    Exit code 0: this NBO_HOME's Redis runs; 1: nothing runs; 2: the port is taken by
    another home's Redis (or by something else).

    Example: nbo redis status
    """
    settings = get_settings()
    if settings.redis_url:
        typer.echo("NBO_REDIS_URL is set: the project uses an external Redis")
        return
    port = settings.embedded_redis_port
    found = embedded_status(port)
    if not found.listening:
        typer.echo(f"port {port}: not running (home {settings.home.resolve()})")
        raise typer.Exit(EXIT_NOT_RUNNING)
    if not found.owned_by(settings.redis_dir):
        typer.echo(conflict_message(found, settings.redis_dir))
        raise typer.Exit(EXIT_OTHER_HOME)
    typer.echo(f"port {port}: running, {_describe(found)}")


@app.command("migrate-keys")
def migrate_keys() -> None:
    """Rename contact, audit and event keys written before Redis Cluster support.

    Run once on a single Redis after upgrading (safe to run again). Feature records need
    no renaming: the next `nbo features materialize` writes the new layout.

    Example: nbo redis migrate-keys
    """
    settings = get_settings()
    with exit_on(ValueError, redis.RedisError, RedisUnavailableError):
        client = connect(settings)
        try:
            report = migrate_legacy_keys(client, settings)
        finally:
            client.close()
    for kind, count in report.renamed.items():
        typer.echo(f"{kind}: {count} keys renamed")
    for note in report.kept:
        typer.echo(f"kept: {note}", err=True)
