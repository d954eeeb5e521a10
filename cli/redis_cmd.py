"""``nbo redis``: the embedded Redis server used when ``NBO_REDIS_URL`` is unset, and the
one-off renaming of keys written before Redis Cluster support."""

from __future__ import annotations

import redis
import typer

from cli.errors import exit_on
from cli.key_migration import migrate_legacy_keys
from core.redis_server import (
    RedisUnavailableError,
    connect,
    resolve_redis_url,
    stop_embedded_redis,
)
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True)


@app.command("start")
def start() -> None:
    """Start the embedded Redis (no-op if it runs or an external URL is set); print its URL.

    Example: nbo redis start
    """
    typer.echo(resolve_redis_url(get_settings()))


@app.command("stop")
def stop() -> None:
    """Stop the embedded Redis server (saves its data under NBO_HOME/redis).

    Example: nbo redis stop
    """
    settings = get_settings()
    if settings.redis_url:
        typer.echo("NBO_REDIS_URL is set: not stopping an external server", err=True)
        raise typer.Exit(2)
    stop_embedded_redis(settings.embedded_redis_port)
    typer.echo("stopped")


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
