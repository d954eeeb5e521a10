"""``nbo audit``: export the decision audit trail; explain one customer's offers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
import typer
from rich.console import Console

from cli.errors import exit_on
from cli.events import parse_day
from cli.progress import spinner
from core.embedded_redis import RedisUnavailableError
from core.pseudonym import pseudonymiser
from core.redis_server import connect
from core.settings import get_settings
from features.audit_export import decisions_for, export_audit
from features.customer_index import reindex as reindex_streams

app = typer.Typer(no_args_is_help=True)

_EXPECTED = (ValueError, OSError, redis.RedisError, RedisUnavailableError)


@app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="File to write: .jsonl, or .parquet."),
    since: str | None = typer.Option(None, "--since", help="First decision date (YYYY-MM-DD)."),
) -> None:
    """Copy the recorded decisions from Redis to a durable file (replaced atomically).

    Example: nbo audit export --out var/audit/decisions-2026-11.jsonl
    """
    settings = get_settings()
    with exit_on(*_EXPECTED):
        start = parse_day("--since", since) if since else None
        written = export_audit(connect(settings), settings.audit_prefix, out, start)
    typer.echo(f"{written} decisions -> {out}")


@app.command("why")
def why(
    customer: str = typer.Option(..., "--customer", help="The bank's customer id."),
    product: str | None = typer.Option(None, "--product", help="Only decisions about it."),
    since: str | None = typer.Option(None, "--since", help="From this date (YYYY-MM-DD)."),
) -> None:
    """Why was this customer shown (or not shown) an offer, by which model, was it suitable?

    The id is pseudonymised with NBO_PSEUDONYM_KEY to find the records; it is not stored.

    Example: nbo audit why --customer S0004026 --product credit_card --since 2026-11-01
    """
    settings = get_settings()
    with exit_on(*_EXPECTED):
        start = parse_day("--since", since) if since else None
        found = decisions_for(
            connect(settings),
            settings.audit_prefix,
            pseudonymiser(settings)(customer),
            product,
            start,
        )
    if not found:
        typer.echo("no recorded decision for this customer in the retained window", err=True)
        raise typer.Exit(1)
    for record in found:
        typer.echo("\n".join(explain(record, product)))
        typer.echo("")


@app.command("reindex")
def reindex() -> None:
    """Index every decision and event in the Redis streams under its customer.

    The console's customer timeline reads these indexes; decisions and events stored
    before they existed (or whose index keys were lost) are added with the same cap and
    expiry the service gives them. Safe to rerun, and to run while the service serves.

    Example: nbo audit reindex
    """
    settings = get_settings()
    console = Console(stderr=True)
    with exit_on(*_EXPECTED), spinner(console) as bar:
        task = bar.add_task("reading the streams", total=None)

        def update(stream: str, read: int) -> None:
            bar.update(task, description=f"indexing {stream}: {read:,} entries read")

        done = reindex_streams(connect(settings), settings, update)
    typer.echo(
        f"{done.decisions} decisions indexed under {done.decision_customers} customers, "
        f"{done.events} events under {done.event_customers} customers"
    )


def explain(record: dict[str, Any], product: str | None) -> list[str]:
    """Plain lines for one recorded decision."""
    models = ", ".join(f"{n} v{v}" for n, v in (record.get("model_versions") or {}).items())
    feature_set = record.get("feature_set") or {}
    lines = [
        f"{record.get('decided_at')}  request {record.get('request_id')}  "
        f"channel {record.get('channel')}",
        f"  models: {models or 'none (fallback)'}"
        + (f"  variant {record['variant']}" if record.get("variant") else ""),
        f"  features: {feature_set.get('version', 'none')}"
        + (f" (age {feature_set['age_seconds'] / 3600:.1f} h)" if feature_set else ""),
    ]
    if record.get("degraded_reason"):
        lines.append(f"  degraded: {record['degraded_reason']}")
    churn = record.get("churn_risk")
    if churn:
        lines.append(f"  churn risk: {churn['band']} ({churn['probability']:.2f})")
    offers = record.get("offers") or []
    exclusions = {e["product_id"]: e for e in record.get("exclusions") or []}
    for offer in offers:
        if product is None or offer["product_id"] == product:
            reasons = "; ".join(r["text"] for r in offer.get("reasons") or [])
            lines.append(
                f"  offered #{offer['rank']} {offer['product_id']}: suitable "
                f"(passed suitability, eligibility, channel and contact rules) - {reasons}"
            )
    for pid, exc in exclusions.items():
        if product is None or pid == product:
            lines.append(f"  not offered {pid}: {exc['rule']} - {exc['detail']}")
    shown = {o["product_id"] for o in offers}
    if product is not None and product not in exclusions and product not in shown:
        arbitration = record.get("arbitration") or {}
        ranked = {p["product_id"] for p in arbitration.get("priorities", [])}
        if product in ranked:
            lines.append(f"  {product}: suitable, but ranked below the offers shown")
        else:
            lines.append(f"  {product}: not a candidate (no model score, or retention not due)")
    return lines
