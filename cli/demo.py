"""``nbo demo``: the whole path from data to a served offer, on the embedded defaults.

Each step is the library call behind a CLI command, printed as that command so a newcomer
can re-run any step by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from core.api_keys import SCOPES, ApiKeyEntry, hash_key, new_key
from core.settings import Environment, Settings, get_settings

if TYPE_CHECKING:
    from core.tables import Tables
    from features.online_store import OnlineStore

console = Console(stderr=True)


def _last_month_end(today: date) -> date:
    return today.replace(day=1) - timedelta(days=1)


@contextmanager
def _step(command: str) -> Iterator[Callable[[str], None]]:
    """Print the equivalent CLI command, show live progress, then the elapsed time."""
    started = time.perf_counter()
    console.print(f"[bold cyan]$ {command}[/]")
    with console.status(command) as status:
        yield lambda msg: status.update(f"{command}: {msg}")
    console.print(f"  done in {time.perf_counter() - started:.1f} s")


def demo(
    customers: int = typer.Option(20_000, min=100, help="Synthetic customers."),
    months: int = typer.Option(12, min=6, help="Monthly snapshots."),
    seed: int = typer.Option(7, help="Random seed of the synthetic bank."),
    serve: bool = typer.Option(True, help="Serve on NBO_HOST:NBO_PORT at the end."),
) -> None:
    """Generate a bank, train and promote the recommender, churn and maturity models,
    materialize features, then serve.

    Example: nbo demo --customers 20000 --months 12 --seed 7
    """
    from cli.errors import exit_on
    from core.catalogue import load_catalogue
    from core.embedded_redis import RedisUnavailableError
    from core.moments import load_moments
    from core.redis_server import connect, resolve_redis_url
    from core.tables import contract_products, write_tables
    from features.materialize import materialize
    from features.online_store import OnlineStore
    from features.synthetic import generate_bank
    from registry.client import Registry
    from training.churn import train_churn
    from training.datasets import DatasetError
    from training.maturity import train_maturity
    from training.precompute_scores import precompute_scores, served_models
    from training.recommender import train_recommender

    settings = get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    with _step("nbo redis start"), exit_on(RedisUnavailableError):  # e.g. another home's
        url = resolve_redis_url(settings)
    console.print(f"  Redis at {url}; MLflow at {settings.tracking_uri}")

    end_month = _last_month_end(date.today())
    with _step(f"nbo data generate --customers {customers} --months {months} --seed {seed}") as p:
        tables = generate_bank(customers, months, seed, catalogue, end_month, progress=p)
        write_tables(
            tables,
            settings.data_dir,
            [x.id for x in catalogue.holdable],
            contract_products(catalogue),
        )

    registry = Registry(settings)
    for job, name, kind in (
        (train_recommender, settings.recommender_model_name, "recommender"),
        (train_churn, settings.churn_model_name, "churn"),
        (train_maturity, settings.maturity_model_name, "maturity"),
    ):
        with _step(f"nbo train {kind}") as p:
            try:
                result = job(tables, catalogue, settings, progress=p)
            except DatasetError as exc:
                if kind != "maturity":
                    raise
                skipped: str | None = str(exc)  # a small bank may have too few maturities
            else:
                skipped = None
        if skipped is not None:
            console.print(f"  {name} not trained ({skipped}); the service runs without it")
            continue
        shown = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith(("_at_7", "auc"))}
        console.print(f"  {name} version {result.version}: {shown}")
        with _step(f"nbo registry promote {name} {result.version} --alias champion"):
            registry.promote(name, result.registered_version, "champion")

    as_of = tables.holdings["month"].max().date()
    with _step(f"nbo features materialize --as-of {as_of:%Y-%m-%d}") as p:
        store = OnlineStore.for_settings(connect(settings), settings)
        info = materialize(
            tables,
            as_of,
            catalogue,
            store,
            keep_versions=settings.feature_versions_kept,
            progress=lambda done, total: p(f"{done:,}/{total:,} customers"),
            moments=load_moments(settings.moments_path),
        )
    console.print(f"  feature set {info.version}: {info.customers:,} customers")

    with _step("nbo score recommendations") as p:
        recommender, churn = served_models(registry, settings)
        scored = precompute_scores(
            store.client,
            store,
            recommender,
            churn,
            keep=settings.feature_versions_kept,
            progress=lambda done, total: p(f"{done:,}/{total:,} customers"),
        )
    console.print(f"  score set {scored.version}: {scored.customers:,} customers")

    sample = _sample_customer(store, info.version, tables)
    ids_file = settings.home / "demo_customers.txt"
    ids_file.write_text("\n".join(tables.customers["customer_id"].head(10_000)) + "\n")
    base = f"http://{settings.host}:{settings.port}"
    key, served = _with_demo_key(settings)
    console.print("\n[bold green]Ready.[/] Try:\n")
    typer.echo(
        f"curl -s -X POST {base}/v1/recommendations -H 'content-type: application/json' "
        f"-H 'X-API-Key: {key}' "
        f"""-d '{{"customer_id": "{sample}", "channel": "app", "k": 3}}'"""
    )
    console.print(
        f"\nThe key '{DEMO_KEY_NAME}' (every scope) works for this demo server only; "
        "`nbo keys new` makes lasting ones (README: Authentication and rate limiting)."
    )
    console.print(
        f"\nWeb console: {base}/console - log in with the key above, look up customer "
        f"{sample} (docs/console.md)"
    )
    console.print(f"API docs: {base}/docs   metrics: {base}/metrics")
    console.print(f"Customer ids for load tests: {ids_file}\n")
    if serve:
        import uvicorn

        from service.app import create_app

        uvicorn.run(
            create_app(served), host=settings.host, port=settings.port, log_level=settings.log_level
        )


DEMO_KEY_NAME = "demo"


def _with_demo_key(settings: Settings) -> tuple[str, Settings]:
    """A fresh all-scope key, and the settings of the demo server that accepts it.

    Only the key's hash goes into the server's settings (as in production); the key is
    printed once, in the curl line, and forgotten when the demo server stops. The demo
    server runs in development mode: it may use the public demo pseudonym key, which the
    service refuses in production.
    """
    key = new_key()
    entry = ApiKeyEntry(name=DEMO_KEY_NAME, sha256=hash_key(key), scopes=SCOPES)
    others = [k for k in settings.api_keys if k.name != DEMO_KEY_NAME]
    update = {"api_keys": [*others, entry], "environment": Environment.DEVELOPMENT}
    return key, settings.model_copy(update=update)


def _sample_customer(store: OnlineStore, version: str, tables: Tables) -> str:
    """A customer with a valid risk assessment above C1, so the answer shows more than R1."""
    customers = tables.customers
    assessed = customers[(customers["risk_level"] >= 3) & customers["left_on"].isna()]
    recent = assessed.sort_values("risk_assessed_on", ascending=False)
    for customer_id in recent["customer_id"].head(200):
        if store.read(version, str(customer_id)) is not None:
            return str(customer_id)
    return str(customers["customer_id"].iloc[0])
