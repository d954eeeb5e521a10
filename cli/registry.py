"""``nbo registry``: list registered model versions and move the champion/challenger aliases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.table import Table

from core.settings import get_settings
from registry.client import ALLOWED_ALIASES, Registry, RegistryError, VersionInfo

app = typer.Typer(no_args_is_help=True)

KEY_METRICS = {
    "map_at_7": "MAP@7",
    "popularity_map_at_7": "pop. MAP@7",
    "ndcg_at_7": "NDCG@7",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier",
}
"""Metrics shown in the listing (when a model's versions have them), with their headers."""


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Registry failures become one line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except (RegistryError, MlflowException, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _table(name: str, versions: list[VersionInfo]) -> Table:
    """One model's versions, newest first, with the metrics its versions carry."""
    shown = [k for k in KEY_METRICS if any(k in v.metrics for v in versions)]
    table = Table(title=name, title_justify="left")
    table.add_column("version", justify="right")
    table.add_column("aliases")
    for key in shown:
        table.add_column(KEY_METRICS[key], justify="right")
    table.add_column("created (UTC)")
    table.add_column("run")
    for v in versions:
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            *[f"{v.metrics[k]:.4f}" if k in v.metrics else "" for k in shown],
            f"{v.created_at:%Y-%m-%d %H:%M}",
            (v.run_id or "")[:8],
        )
    return table


@app.command("list")
def list_versions(
    model: str | None = typer.Argument(None, help="Registered model name; default: all."),
) -> None:
    """Show every version with its aliases, key metrics and creation time.

    Example: nbo registry list nbo-recommender
    """
    with _clear_errors():
        registry = Registry(get_settings())
        names = [model] if model else registry.model_names()
        listing = {name: registry.list_versions(name) for name in names}
    if not any(listing.values()):
        typer.echo("no registered models; run `nbo train recommender` first", err=True)
        raise typer.Exit(1)
    console = Console()
    for name, versions in listing.items():
        console.print(_table(name, versions))


@app.command("promote")
def promote(
    model: str = typer.Argument(..., help="Registered model name, e.g. nbo-recommender."),
    version: int = typer.Argument(..., min=1, help="Version number to promote."),
    alias: str = typer.Option(
        "champion", "--alias", help=f"Alias to move: {' or '.join(ALLOWED_ALIASES)}."
    ),
) -> None:
    """Point an alias (champion by default) at a version; the service serves the champion.

    Example: nbo registry promote nbo-recommender 3
    """
    with _clear_errors():
        info = Registry(get_settings()).promote(model, version, alias)
    typer.echo(
        f"{info.name} version {info.version} is now {alias} (aliases: {', '.join(info.aliases)})"
    )
