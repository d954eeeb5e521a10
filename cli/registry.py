"""``nbo registry``: list, compare, promote (gated), roll back, unset an alias, audit and replay
model versions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.table import Table

from cli.errors import exit_on, fail
from core.redis_keys import decisions_key
from core.redis_server import RedisClient
from core.settings import Settings, get_settings
from features.audit_features import unpack
from registry import promotion
from registry.client import ALLOWED_ALIASES, Registry, RegistryError, VersionInfo
from registry.compare import compare as compare_versions
from registry.history import AliasEvent, holders_at
from registry.replay import ReplayReport, replay

app = typer.Typer(no_args_is_help=True)

KEY_METRICS = {
    "map_at_7": "MAP@7",
    "popularity_map_at_7": "pop. MAP@7",
    "ndcg_at_7": "NDCG@7",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier",
    "top_decile_lift": "top-decile lift",
}
"""Metrics shown in the listing (when a model's versions have them), with their headers."""

_EXPECTED = (RegistryError, MlflowException, OSError, ValueError, redis.RedisError)


def _console() -> Console:
    return Console()


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
    with exit_on(*_EXPECTED):
        registry = Registry(get_settings())
        names = [model] if model else registry.model_names()
        listing = {name: registry.list_versions(name) for name in names}
    if not any(listing.values()):
        typer.echo("no registered models; run `nbo train recommender` first", err=True)
        raise typer.Exit(1)
    console = _console()
    for name, versions in listing.items():
        console.print(_table(name, versions))


@app.command("compare")
def compare(
    model: str = typer.Argument(..., help="Registered model name."),
    left: int = typer.Argument(..., min=1, help="First version (the reference, e.g. champion)."),
    right: int = typer.Argument(..., min=1, help="Second version (the candidate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Metrics, params and training-data lineage of two versions side by side, and the
    promotion gate's finding for RIGHT against LEFT.

    Rows that differ are marked with *. The gate line gives RIGHT - LEFT on the primary
    metric, its 95% paired bootstrap interval over the holdout rows (or why there is none),
    the margin (NBO_PROMOTION_MARGIN) and the verdict.

    Example: nbo registry compare nbo-recommender 2 3 --json
    """
    with exit_on(*_EXPECTED):
        result = compare_versions(Registry(get_settings()), model, left, right)
    if as_json:
        typer.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"{model}: version {left} vs {right}", title_justify="left")
    table.add_column("")
    table.add_column("key")
    table.add_column(f"v{left}", justify="right")
    table.add_column(f"v{right}", justify="right")
    table.add_column("")
    for row in result.rows:
        table.add_row(row.section, row.key, row.left, row.right, "*" if row.differs else "")
    console = _console()
    console.print(table)
    gate = result.gate.describe() if result.gate else f"not comparable: {result.gate_problem}"
    console.print(f"gate, v{right} against v{left}: {gate}", markup=False, highlight=False)


@app.command("promote")
def promote(
    model: str = typer.Argument(..., help="Registered model name, e.g. nbo-recommender."),
    version: int = typer.Argument(..., min=1, help="Version number to promote."),
    alias: str = typer.Option(
        "champion", "--alias", help=f"Alias to move: {' or '.join(ALLOWED_ALIASES)}."
    ),
    force: bool = typer.Option(False, "--force", help="Override the gate (needs --reason)."),
    reason: str = typer.Option("", "--reason", help="Why: recorded in the alias history."),
    replay_last: int = typer.Option(
        0,
        "--replay-last",
        min=0,
        help="Also replay the last N recorded decisions (recommender; needs Redis); any "
        "unsuitable top offer refuses the version.",
    ),
) -> None:
    """Point an alias at a version if it is not worse than the champion beyond the margin.

    The gate compares the primary metric (recommender map_at_7; churn, maturity, response
    roc_auc) with the current champion's, evaluated on the same data (data fingerprint and
    holdout date): the lower bound of the 95% paired bootstrap interval of (version -
    champion) must be above -NBO_PROMOTION_MARGIN (without per-row holdout values: the
    logged difference). A refusal exits with code 2 and is recorded too. Every promotion
    is recorded (who, when, why, previous holder, gate): see `nbo registry history`.

    Example: nbo registry promote nbo-recommender 3 --reason "retrained on October data"
    """
    settings = get_settings()
    with exit_on(*_EXPECTED):
        registry = Registry(settings)
        report = None
        if replay_last:
            report = _replay(settings, registry, model, version, replay_last)
            _print_replay(report, model, version)
        info, verdict = promotion.promote(
            registry, model, version, alias, force=force, reason=reason, replay=report
        )
    if verdict.problems:
        typer.echo("gate overridden (--force): " + "; ".join(verdict.problems), err=True)
    elif verdict.difference is not None:
        typer.echo(f"gate: {verdict.difference.describe()}")
    typer.echo(
        f"{info.name} version {info.version} is now {alias} (aliases: {', '.join(info.aliases)})"
    )


@app.command("rollback")
def rollback(
    model: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("", "--reason", help="Why: recorded in the alias history."),
) -> None:
    """Move the champion back to the version that held it before (recorded like a promotion).

    Example: nbo registry rollback nbo-recommender --reason "acceptance rate dropped"
    """
    with exit_on(*_EXPECTED):
        info, event = promotion.rollback(Registry(get_settings()), model, reason=reason)
    typer.echo(f"{info.name} champion rolled back from version {event.previous} to {event.version}")


@app.command("unset-alias")
def unset_alias(
    model: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Argument(..., help="Alias to remove, e.g. challenger."),
    reason: str = typer.Option("", "--reason", help="Why (required): recorded in the history."),
    yes: bool = typer.Option(
        False, "--yes", help="Needed to remove champion: services could not start without it."
    ),
) -> None:
    """Remove an alias from a model and record it in the alias history.

    A reason is always required. Removing `champion` also needs --yes: running services keep
    the version they loaded, but a service that starts (or restarts) without a champion has
    no model to serve. Removing `challenger` retires the challenger at the next alias check.

    Example: nbo registry unset-alias nbo-recommender challenger --reason "test finished"
    """
    if not reason.strip():
        raise fail("unset-alias needs --reason TEXT: say why the alias is removed")
    if alias == "champion" and not yes:
        raise fail(
            f"removing champion from {model} leaves services that start without a model to "
            "serve; add --yes if that is intended (or promote another version instead)"
        )
    with exit_on(*_EXPECTED):
        event = Registry(get_settings()).unset_alias(model, alias, reason=reason.strip())
    typer.echo(f"{model}: alias {alias} removed (it pointed at version {event.version})")


@app.command("history")
def history(
    model: str = typer.Argument(..., help="Registered model name."),
    at: str | None = typer.Option(
        None, "--at", help="ISO timestamp (UTC if no zone): show who held each alias then."
    ),
) -> None:
    """Which version held each alias when, who moved it and why.

    Example: nbo registry history nbo-recommender --at 2026-11-02T09:30:00Z
    """
    with exit_on(*_EXPECTED):
        events = Registry(get_settings()).history(model)
        when = _timestamp(at) if at is not None else None
    console = _console()
    if when is not None:
        holders = holders_at(events, when)
        table = Table(title=f"{model} at {when.isoformat()}", title_justify="left")
        table.add_column("alias")
        table.add_column("version", justify="right")
        for alias in ALLOWED_ALIASES:
            table.add_row(alias, str(holders[alias]) if alias in holders else "-")
        console.print(table)
        return
    if not events:
        typer.echo(f"no alias moves recorded for {model}")
        return
    console.print(_history_table(model, events))


@app.command("replay")
def replay_cmd(
    model: str = typer.Argument(..., help="Registered recommender model name."),
    version: int = typer.Argument(..., min=1, help="Candidate version."),
    last: int = typer.Option(1000, "--last", min=1, help="How many recent decisions."),
) -> None:
    """Re-score the last N recorded decisions with a candidate recommender.

    Reports how many top offers would change and how many of the candidate's first choices
    would be unsuitable (must be 0 to promote without --force).

    Example: nbo registry replay nbo-recommender 3 --last 500
    """
    settings = get_settings()
    with exit_on(*_EXPECTED):
        report = _replay(settings, Registry(settings), model, version, last)
    _print_replay(report, model, version)


@app.command("check-portable")
def check_portable(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Argument(..., min=1, help="Version to check."),
) -> None:
    """Load a version where only its declared requirements are installed, and score its
    input example there.

    Creates a fresh virtual environment in a temporary folder, installs the version's
    requirements.txt from the package index (minutes), loads the model with MLflow alone
    and prints the prediction. Exit code 1 with pip's or Python's error if it fails.

    Example: nbo registry check-portable nbo-churn 2
    """
    from registry.portability import check_version  # creates a venv: keep --help fast

    settings = get_settings()
    with exit_on(*_EXPECTED):
        try:
            out = check_version(settings, model, version)
        except RuntimeError as exc:
            typer.echo(f"{model} version {version} does not load on its own:\n{exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{model} version {version} loads with its own requirements; prediction {out}")


# -- helpers ------------------------------------------------------------------------------


def _history_table(model: str, events: list[AliasEvent]) -> Table:
    table = Table(title=f"{model}: alias history", title_justify="left")
    columns = ("#", "when (UTC)", "alias", "version", "previous", "action", "who", "why", "gate")
    for column in columns:
        table.add_column(column, justify="right" if column in ("#", "version") else "left")
    for e in events:
        action = (
            e.action + (" (forced)" if e.forced else "") + ("" if e.moved else f" ({e.outcome})")
        )
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.alias,
            str(e.version),
            "-" if e.previous is None else str(e.previous),
            action,
            e.actor,
            e.reason,
            e.gate,
        )
    return table


def _timestamp(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--at {text!r} is not an ISO timestamp (e.g. 2026-11-02T09:30:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _replay(
    settings: Settings, registry: Registry, model: str, version: int, last: int
) -> ReplayReport:
    from core.catalogue import load_catalogue
    from core.redis_server import connect

    loaded = registry.load_version(model, version)
    if loaded.scorer.kind != "recommender":
        raise RegistryError(
            f"{model} version {version} is a {loaded.scorer.kind} model; replay needs a recommender"
        )
    client = connect(settings)
    try:
        decisions = list(recent_decisions(client, settings.audit_prefix, last))
    finally:
        client.close()
    return replay(
        decisions,
        loaded.scorer,  # type: ignore[arg-type]  # kind checked above
        load_catalogue(settings.catalogue_path),
        settings.risk_assessment_validity_days,
    )


def recent_decisions(
    client: RedisClient, audit_prefix: str, count: int
) -> Iterator[dict[str, Any]]:
    """The last ``count`` decisions of the audit stream, newest first, features unpacked."""
    for _entry_id, entry in client.xrevrange(decisions_key(audit_prefix), count=count) or []:
        raw = (entry or {}).get(b"d")
        if raw is None:
            continue
        decoded = orjson.loads(raw)
        if isinstance(decoded, dict):
            yield unpack(client, audit_prefix, decoded)


def _print_replay(report: ReplayReport, model: str, version: int) -> None:
    typer.echo(
        f"replay of {model} version {version}: {report.decisions} decisions "
        f"({report.skipped} skipped without a feature record), top offer changed in "
        f"{report.changed}, unsuitable first choice in {report.unsuitable}"
        + (
            " ("
            + ", ".join(f"{k}: {v}" for k, v in sorted(report.unsuitable_by_rule.items()))
            + ")"
            if report.unsuitable_by_rule
            else ""
        )
    )
