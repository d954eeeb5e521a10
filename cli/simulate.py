"""``nbo simulate``: the closed loop on a synthetic bank, days in minutes.

The loop itself is ``cli.simulation_loop``; this module parses options, shows progress and
prints the outcomes report. Docs: docs/simulation.md.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)


def _rate(value: dict[str, float] | None) -> str:
    return "-" if value is None else f"{value['estimate']:.1%}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline: acceptance and take-up by variant and period, then the retraining."""
    run, retrained = report["run"], report["retraining"]
    lines = [
        f"run {run['id']}: {run['customers']:,} customers, {run['days']} days from "
        f"{run['first_day']}, {run['decisions']:,} decisions ({run['control_decisions']:,} "
        f"control), {run['offers_shown']:,} offers shown, {run['accepted']:,} accepted, "
        f"{run['declined']:,} declined, {run['seconds']} s",
        f"retrained after day {run['retrained_after_day']}: {retrained['model']} version "
        f"{retrained['version']} on {retrained['rows']:,} offers shown "
        f"({retrained['algorithm']}, CV ROC-AUC {retrained['cv_roc_auc']}), "
        + ("promoted to champion" if retrained["promoted"] else "refused by the gate: ")
        + "; ".join(retrained["gate"]),
        "hot reload: "
        + (
            f"{retrained['model']} served from the days after retraining"
            if retrained["served"]
            else f"this service build has no {retrained['model']} slot, so the days after "
            "retraining are served by the same policy as before"
        ),
        "",
        f"{'period':<18} {'variant':<10} {'decisions':>9} {'shown':>6} {'accepted':>8} "
        f"{'acceptance':>10} {'took up':>12} {'take-up':>8}",
    ]
    for period, figures in report["periods"].items():
        for g in figures["groups"]:
            lines.append(
                f"{period:<18} {g['group'].get('variant', '-'):<10} {g['decisions']:>9} "
                f"{g['offers_shown']:>6} {g['accepted']:>8} {_rate(g['acceptance_rate']):>10} "
                f"{g['customers_took_up']:>5}/{g['customers_with_offers']:<6} "
                f"{_rate(g['take_up_rate']):>8}"
            )
        for u in figures["uplift"]:
            v = u["uplift"]
            what = (
                u.get("note", "-")
                if v is None
                else f"{v['estimate']:+.1%} [{v['low']:+.1%}, {v['high']:+.1%}]"
            )
            lines.append(f"{period:<18} uplift of {u['group']['variant']} vs control: {what}")
    comparison = report.get("learned_vs_baseline")
    if comparison:
        after = comparison["after_retraining"]
        lines += [
            "",
            f"learned policy vs baseline arm (never retrained), {after['since']} to "
            f"{after['until']}, champion group:",
        ]
        for what in ("acceptance", "take_up"):
            figures = after[what]
            rate = {
                arm: figures[arm]["successes"] / figures[arm]["trials"]
                if figures[arm]["trials"]
                else float("nan")
                for arm in ("learned", "baseline")
            }
            d = figures["difference"]
            interval = (
                "-" if d is None else f"{d['estimate']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}]"
            )
            lines.append(
                f"  {what:<10} learned {rate['learned']:.1%} "
                f"({figures['learned']['successes']}/{figures['learned']['trials']}), baseline "
                f"{rate['baseline']:.1%} ({figures['baseline']['successes']}/"
                f"{figures['baseline']['trials']}): {interval}"
            )
    return lines


def simulate(
    customers: int = typer.Option(2000, help="Synthetic customers of the bank."),
    days: int = typer.Option(14, help="Simulated days; nbo-response is retrained at half."),
    visits_per_day: int | None = typer.Option(
        None, help="Customers visiting per day (a sample); default a tenth of --customers."
    ),
    months: int = typer.Option(8, help="Monthly snapshots of the bank before day 1."),
    seed: int = typer.Option(7, help="Seed of the bank and of its customers' behaviour."),
    k: int = typer.Option(3, help="Offers asked per visit."),
    control_share: float = typer.Option(
        0.2, help="Share of customers in the control group (NBO_CONTROL_SHARE of the run)."
    ),
    baseline: bool = typer.Option(
        True,
        "--baseline/--no-baseline",
        help="Also run the baseline arm (same bank and days, never retrained) to compare "
        "the learned policy with (doubles the run time).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable report."),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON report here."),
) -> None:
    """Run the closed loop on a synthetic bank: serve, log, retrain, promote, report.

    Generates a bank, trains and promotes its models, serves the real app with a simulated
    clock; each day a sample of customers asks for offers and answers them by a hidden
    behaviour (channel preference, fatigue, product fit). After half the days nbo-response
    is trained from the logged decisions and events, promoted through the gate and hot
    reloaded. Prints acceptance and take-up by variant before and after retraining, and
    uplift against control, and (unless --no-baseline) the learned policy against a baseline
    arm served the same days without retraining. Simulated uplift proves the mechanics, not
    the business effect.

    Example: nbo simulate --customers 2000 --days 14
    """
    from cli.errors import exit_on
    from cli.simulation_bank import SimulationError, SimulationPlan
    from cli.simulation_loop import simulate as run
    from cli.simulation_loop import write_report

    with exit_on(SimulationError):
        visits = visits_per_day if visits_per_day is not None else max(1, customers // 10)
        plan = SimulationPlan(customers, days, months, seed, visits, k, control_share, baseline)
    from mlflow.exceptions import MlflowException

    from core.catalogue import CatalogueError
    from core.embedded_redis import RedisUnavailableError
    from core.settings import get_settings
    from registry.client import RegistryError
    from training.datasets import DatasetError

    started = time.perf_counter()

    def progress(message: str) -> None:
        console.print(f"[{time.perf_counter() - started:6.1f} s] {message}")

    with exit_on(
        SimulationError,
        DatasetError,
        CatalogueError,
        RedisUnavailableError,
        RegistryError,
        MlflowException,
        OSError,
    ):
        report = run(get_settings(), plan, date.today(), progress)
        if out is not None:
            write_report(report, out)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo("\n".join(summary_lines(report)))
