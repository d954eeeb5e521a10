"""The closed loop of ``nbo simulate``: a synthetic bank, the real service, simulated days.

1. ``prepare`` (``cli.simulation_bank``): the run's bank, models and features.
2. ``serving`` (``cli.simulation_service``): the real app with a simulated clock.
3. ``run_days``: each day a sample of customers visits on a channel of their habits
   (``features.synthetic_response``), asks ``POST /v1/recommendations``; every offer shown
   is sent as a ``shown`` event and, by the hidden behaviour, ``accepted`` / ``declined``.
4. ``retrain``: export decisions and events, train ``nbo-response`` from them
   (``training.response_logged``), promote it through the gate, ``POST /admin/reload``.
5. ``outcomes``: ``features.outcomes`` over the days before and after retraining, with a
   holdings snapshot at the end of the run (what was held, plus accepted offers, plus
   organic adds at the bank's own rates, control included).
6. ``learned_vs_baseline``: the baseline arm is the same bank (same seed: same customers,
   models and hidden behaviour) served the same days with no retraining, in keys and a
   registry of its own; after the retraining day the learned policy's acceptance and
   take-up are compared with the baseline's over the same days (difference with a 95%
   Newcombe interval). Why a second arm: before and after retraining differ in time too
   (the same customers grow tired of repeated offers), so "after vs before" alone would
   credit or blame the model for fatigue.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from cli.simulation_bank import Bank, Progress, SimulationPlan, labelled, prepare, run_settings
from cli.simulation_service import SimClock, post, serving
from core.settings import Settings

DAY_START_HOUR = 8
DAY_HOURS = 12


@dataclass
class Tally:
    """What the simulated customers did (counts for the report)."""

    decisions: int = 0
    control_decisions: int = 0
    offers_shown: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    shown_before: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: set[tuple[str, str]] = field(default_factory=set)


def run_days(
    client: httpx.Client,
    app: Any,
    bank: Bank,
    plan: SimulationPlan,
    clock: SimClock,
    days: range,
    tally: Tally,
    progress: Progress,
) -> None:
    """Simulate ``days`` (indexes from the first simulated day), step 3."""
    customers = bank.tables.customers
    active = customers.loc[customers["left_on"].isna(), "customer_id"].astype(str).to_numpy()
    spacing = timedelta(hours=DAY_HOURS) / plan.visits_per_day
    for day in days:
        start = datetime.combine(bank.first_day + timedelta(days=day), datetime.min.time(), UTC)
        start += timedelta(hours=DAY_START_HOUR)
        rng = np.random.default_rng([plan.seed, 9, day])
        visitors = rng.choice(active, size=min(plan.visits_per_day, len(active)), replace=False)
        for n, customer in enumerate(visitors):
            at = start + n * spacing
            clock.advance_to(at)
            channel = bank.behaviour.visit_channel(str(customer), day)
            body = {"customer_id": str(customer), "channel": channel, "k": plan.k}
            answer = post(client, "/v1/recommendations", body)
            app.state.runtime.audit.flush()  # findable before its events cite it
            tally.decisions += 1
            tally.control_decisions += answer.get("variant") == "control"
            clock.advance_to(at + spacing / 2)
            for i, offer in enumerate(answer["offers"]):
                product = offer["product_id"]
                seen = tally.shown_before[(str(customer), product)]
                event = {
                    "customer_id": str(customer),
                    "product_id": product,
                    "request_id": answer["request_id"],
                    "channel": channel,
                }
                shown_at = at + spacing / 10
                post(
                    client,
                    "/v1/events",
                    event
                    | {
                        "event_id": f"{answer['request_id']}-{i}-shown",
                        "type": "shown",
                        "timestamp": shown_at.isoformat(),
                    },
                )
                tally.offers_shown += 1
                tally.shown_before[(str(customer), product)] += 1
                kind = bank.behaviour.answer(str(customer), product, channel, seen, day)
                if kind is None:
                    continue
                post(
                    client,
                    "/v1/events",
                    event
                    | {
                        "event_id": f"{answer['request_id']}-{i}-{kind}",
                        "type": kind,
                        "timestamp": (at + spacing / 4).isoformat(),
                    },
                )
                tally.answers[kind] += 1
                if kind == "accepted":
                    tally.accepted.add((str(customer), product))
        progress(
            f"day {day + 1}/{plan.days} ({bank.first_day + timedelta(days=day)}): "
            f"{tally.decisions:,} decisions, {tally.offers_shown:,} offers shown, "
            f"{tally.answers['accepted']:,} accepted"
        )


def retrain(
    client: httpx.Client, bank: Bank, plan: SimulationPlan, progress: Progress
) -> dict[str, Any]:
    """Export the logs, train ``nbo-response`` from them, promote through the gate, reload
    (step 4). A refusal of the gate is reported, never forced."""
    from core.redis_server import connect
    from features.audit_export import export_audit
    from features.events_export import export_events
    from registry.client import Registry
    from registry.promotion import PromotionRefused, promote
    from training.response_logged import EVENTS_NAME, train_response_logged

    settings = bank.settings
    logs = settings.home / "logs"
    redis_client = connect(settings)
    since = datetime.combine(bank.first_day, datetime.min.time(), UTC)
    decisions = export_audit(redis_client, settings.audit_prefix, logs / "decisions.jsonl")
    events = export_events(
        redis_client,
        settings.events_prefix,
        since,
        logs / EVENTS_NAME,
        settings.event_future_tolerance_seconds,
    )
    progress(f"exported {decisions:,} decisions and {events:,} events to {logs}")
    result = train_response_logged(
        logs,
        settings,
        bank.tables,
        bank.catalogue,
        window_days=plan.days,
        progress=labelled(progress, "nbo-response"),
    )
    name = settings.response_model_name
    outcome: dict[str, Any] = {
        "logs": str(logs),
        "decisions_exported": decisions,
        "events_exported": events,
        "model": name,
        "version": result.version,
        "rows": int(result.metrics["rows"]),
        "cv_roc_auc": round(result.metrics["roc_auc"], 4),
        "algorithm": result.params["algorithm"],
    }
    try:
        promote(Registry(settings), name, result.registered_version, "champion")
    except PromotionRefused as refused:
        outcome |= {"promoted": False, "gate": refused.problems}
    else:
        outcome |= {"promoted": True, "gate": []}
    reload = client.post("/admin/reload")
    results = reload.json().get("results") if reload.status_code == 200 else None
    outcome["reload"] = results
    # Whether the service has a slot for the response model: if not, the days after
    # retraining are served by the same policy, and the report says so.
    outcome["served"] = any(r.get("model") == name for r in results or [])
    progress(
        f"{name} version {result.version} (CV ROC-AUC {outcome['cv_roc_auc']}): "
        + ("promoted to champion" if outcome["promoted"] else "refused by the gate")
    )
    return outcome


def end_holdings(bank: Bank, tally: Tally, last_day: date, days: int) -> pd.DataFrame:
    """The holdings with one more snapshot dated ``last_day``: each customer's last
    snapshot, plus the products they accepted, plus organic adds over ``days``."""
    holdings = bank.tables.holdings
    products = [c for c in holdings.columns if c not in ("customer_id", "month")]
    last = holdings.sort_values("month").groupby("customer_id", sort=True).tail(1).copy()
    column = {p: j for j, p in enumerate(products)}
    held = np.array(last[products].to_numpy(np.int8), copy=True)
    ids = last["customer_id"].astype(str).tolist()
    accepted: dict[str, list[str]] = {}
    for customer, product in tally.accepted:
        accepted.setdefault(customer, []).append(product)
    for row, customer in enumerate(ids):
        held[row] |= bank.behaviour.organic_adds(customer, held[row], days).astype(np.int8)
        for product in accepted.get(customer, ()):
            if product in column:
                held[row, column[product]] = 1
    snapshot = pd.DataFrame(held, columns=products, dtype=np.int8)
    snapshot.insert(0, "month", pd.Timestamp(last_day))
    snapshot.insert(0, "customer_id", ids)
    return pd.concat([holdings, snapshot], ignore_index=True)


def outcomes(bank: Bank, plan: SimulationPlan, tally: Tally) -> dict[str, Any]:
    """The outcomes report of each period (step 5): before retraining, after, the run."""
    from core.pseudonym import pseudonymiser
    from core.redis_server import connect
    from features.outcomes import ReportWindow, outcomes_report

    settings = bank.settings
    last_day = bank.first_day + timedelta(days=plan.days - 1)
    switch = bank.first_day + timedelta(days=plan.retrain_after)
    holdings = end_holdings(bank, tally, last_day, plan.days)
    client = connect(settings)
    periods = {
        "before_retraining": (bank.first_day, switch - timedelta(days=1)),
        "after_retraining": (switch, last_day),
        "whole_run": (bank.first_day, last_day),
    }
    return {
        name: outcomes_report(
            client,
            settings,
            holdings,
            bank.catalogue,
            pseudonymiser(settings),
            ReportWindow(since=since, until=until, window_days=plan.days),
        )
        for name, (since, until) in periods.items()
    }


def run_arm(
    sim: Settings, plan: SimulationPlan, today: date, progress: Progress, learn: bool
) -> tuple[Bank, Tally, dict[str, Any] | None]:
    """Steps 1-4 for one arm: with ``learn`` retrained after half the days, else never."""
    bank = prepare(sim, plan, today, progress)
    clock = SimClock(datetime.combine(bank.first_day, datetime.min.time(), UTC))
    tally = Tally()
    retrained = None
    with serving(sim, clock) as (client, app):
        run_days(client, app, bank, plan, clock, range(plan.retrain_after), tally, progress)
        if learn:
            retrained = retrain(client, bank, plan, progress)
        run_days(
            client, app, bank, plan, clock, range(plan.retrain_after, plan.days), tally, progress
        )
        app.state.runtime.audit.flush()
    return bank, tally, retrained


def champion_of(report: dict[str, Any]) -> dict[str, Any]:
    """The champion (served, not control) group of one period's outcomes report."""
    return next(g for g in report["groups"] if g["group"].get("variant") == "champion")


def learned_vs_baseline(learned: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Acceptance and take-up of the learned policy minus the baseline's, same days."""
    from features.outcome_stats import newcombe_difference

    a, b = champion_of(learned), champion_of(baseline)
    out: dict[str, Any] = {"since": learned["since"], "until": learned["until"]}
    for what, hits, trials in (
        ("acceptance", "accepted", "offers_shown"),
        ("take_up", "customers_took_up", "customers_with_offers"),
    ):
        diff = newcombe_difference(a[hits], a[trials], b[hits], b[trials])
        out[what] = {
            "learned": {"successes": a[hits], "trials": a[trials]},
            "baseline": {"successes": b[hits], "trials": b[trials]},
            "difference": diff.as_record() if diff else None,
        }
    return out


def simulate(
    settings: Settings, plan: SimulationPlan, today: date, progress: Progress
) -> dict[str, Any]:
    """The whole loop (steps 1-6); the run's report (plain JSON types)."""
    from core.redis_server import resolve_redis_url

    started = time.perf_counter()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    url = resolve_redis_url(settings)
    sim = run_settings(settings, url, plan, run_id)
    bank, tally, retrained = run_arm(sim, plan, today, progress, learn=True)
    progress("outcomes report")
    reports = outcomes(bank, plan, tally)
    comparison: dict[str, Any] | None = None
    if plan.baseline:
        progress("baseline arm: the same bank and days, never retrained")
        base_sim = run_settings(settings, url, plan, f"{run_id}-baseline")
        base_bank, base_tally, _ = run_arm(base_sim, plan, today, progress, learn=False)
        base_reports = outcomes(base_bank, plan, base_tally)
        comparison = {
            "home": str(base_sim.home),
            "decisions": base_tally.decisions,
            "offers_shown": base_tally.offers_shown,
            "accepted": base_tally.answers["accepted"],
            "after_retraining": learned_vs_baseline(
                reports["after_retraining"], base_reports["after_retraining"]
            ),
        }
    return {
        "run": {
            "id": run_id,
            "home": str(sim.home),
            "customers": plan.customers,
            "days": plan.days,
            "first_day": bank.first_day.isoformat(),
            "retrained_after_day": plan.retrain_after,
            "visits_per_day": plan.visits_per_day,
            "control_share": plan.control_share,
            "seed": plan.seed,
            "champions": bank.versions,
            "decisions": tally.decisions,
            "control_decisions": tally.control_decisions,
            "offers_shown": tally.offers_shown,
            "accepted": tally.answers["accepted"],
            "declined": tally.answers["declined"],
            "seconds": round(time.perf_counter() - started, 1),
        },
        "retraining": retrained,
        "periods": reports,
        "learned_vs_baseline": comparison,
    }


def write_report(report: dict[str, Any], out: Path) -> None:
    """The JSON report next to the run (for docs and comparisons)."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
