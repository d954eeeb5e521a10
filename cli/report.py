"""``nbo report outcomes``: acceptance, take-up and uplift against control of a period."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
import typer

from cli.errors import exit_on
from cli.events import parse_day
from core.catalogue import load_catalogue
from core.embedded_redis import RedisUnavailableError
from core.pseudonym import pseudonymiser
from core.redis_server import connect
from core.settings import get_settings
from core.tables import read_tables
from features.outcomes import ReportWindow, outcomes_report, parse_by

app = typer.Typer(no_args_is_help=True)

_EXPECTED = (ValueError, OSError, redis.RedisError, RedisUnavailableError)


def _rate(value: dict[str, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value['estimate']:.1%} [{value['low']:.1%}, {value['high']:.1%}]"


def text_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain lines for a terminal."""
    lines = [
        f"outcomes {report['since']} .. {report['until']}, take-up within "
        f"{report['window_days']} days (holdings until {report['holdings_until']}"
        + ("" if report["take_up_complete"] else ", incomplete")
        + ")"
    ]
    for g in report["groups"]:
        label = " ".join(f"{k}={v}" for k, v in g["group"].items())
        lines.append(
            f"{label}: decisions {g['decisions']}, customers {g['customers']}, shown "
            f"{g['offers_shown']}, accepted {g['accepted']} ({_rate(g['acceptance_rate'])}), "
            f"took up {g['customers_took_up']}/{g['customers_with_offers']} "
            f"({_rate(g['take_up_rate'])})"
        )
    for u in report["uplift"]:
        label = " ".join(f"{k}={v}" for k, v in u["group"].items())
        if u["uplift"] is None:
            lines.append(f"uplift {label}: {u['note']}")
        else:
            v = u["uplift"]
            lines.append(
                f"uplift {label} vs control: {v['estimate']:+.1%} "
                f"[{v['low']:+.1%}, {v['high']:+.1%}]"
            )
    return lines


@app.command("outcomes")
def outcomes(
    since: str = typer.Option(..., "--since", help="First decision day (YYYY-MM-DD, UTC)."),
    until: str = typer.Option(..., "--until", help="Last decision day, included."),
    by: str = typer.Option(
        "variant", "--by", help="Group keys, comma-separated: variant,product,channel,tier."
    ),
    window_days: int = typer.Option(
        30, "--window-days", help="Take-up and acceptance count within this many days."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable report."),
    html_out: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report with plots here."
    ),
) -> None:
    """Offer acceptance, take-up and uplift against control for the decisions of a period.

    Joins the audit trail, the feedback events and the canonical holdings by pseudonym.

    Example: nbo report outcomes --since 2026-11-01 --until 2026-11-30 --by variant,channel
    """
    settings = get_settings()
    with exit_on(*_EXPECTED):
        window = ReportWindow(
            since=parse_day("--since", since).date(),
            until=parse_day("--until", until).date(),
            window_days=window_days,
            by=parse_by(by),
        )
        catalogue = load_catalogue(settings.catalogue_path)
        tables = read_tables(settings.data_dir)
        report = outcomes_report(
            connect(settings),
            settings,
            tables.holdings,
            catalogue,
            pseudonymiser(settings),
            window,
        )
        if html_out is not None:
            from features.outcomes_html import write_html  # matplotlib only when asked

            write_html(report, html_out)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo("\n".join(text_lines(report)))
    if html_out is not None:
        typer.echo(f"HTML report -> {html_out}", err=True)
