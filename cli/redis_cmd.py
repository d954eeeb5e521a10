"""``nbo redis``: the embedded Redis server used when ``NBO_REDIS_URL`` is unset."""

from __future__ import annotations

import typer

from core.redis_server import resolve_redis_url, stop_embedded_redis
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
