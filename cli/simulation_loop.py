"""The closed loop of ``nbo simulate``: a synthetic bank, the real service, simulated days.

1. ``prepare``: generate a bank whose last snapshot ends before the simulated days, train
   and promote the recommender and churn models, materialize the features - into a run
   folder of its own (``NBO_HOME/simulations/<run>``: tables, MLflow registry) and Redis
   key prefixes of its own (``sim:<run>:...``), so runs never mix.
2. ``serving``: the real app (``service.app.create_app``) under uvicorn on a free local
   port, with a :class:`SimClock` as its clock: the simulator moves time forward.
3. ``run_days``: each day a sample of customers visits on a channel of their habits
   (``features.synthetic_response``), asks ``POST /v1/recommendations``; every offer shown
   is sent as a ``shown`` event and, by the hidden behaviour, ``accepted`` / ``declined``.
4. ``retrain``: export decisions and events, train ``nbo-response`` from them
   (``training.response_logged``), promote it through the gate, ``POST /admin/reload``.
5. ``outcomes``: ``features.outcomes`` over the days before and after retraining, with a
   holdings snapshot at the end of the run (what was held, plus accepted offers, plus
   organic adds at the bank's own rates, control included).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.settings import Settings
from core.tables import Tables
from features.synthetic_response import HiddenBehaviour

Progress = Callable[[str], None]
DAY_START_HOUR = 8
DAY_HOURS = 12


class SimulationError(ValueError):
    """Bad simulation input or a failed step; the message names what is wrong."""


@dataclass(frozen=True)
class SimulationPlan:
    """What to simulate. ``visits_per_day`` customers (a seeded sample) visit each day."""

    customers: int = 2000
    days: int = 14
    months: int = 8
    seed: int = 7
    visits_per_day: int = 200
    k: int = 3
    control_share: float = 0.2

    def __post_init__(self) -> None:
        if self.customers < 100:
            raise SimulationError(f"--customers {self.customers} must be at least 100")
        if self.days < 2:
            raise SimulationError(
                f"--days {self.days} must be at least 2 (half before retraining, half after)"
            )
        if self.months < 6:
            raise SimulationError(f"--months {self.months} must be at least 6")
        if not 1 <= self.visits_per_day <= self.customers:
            raise SimulationError(
                f"--visits-per-day {self.visits_per_day} must be between 1 and --customers "
                f"({self.customers})"
            )
        if not 1 <= self.k <= 10:
            raise SimulationError(f"--k {self.k} must be between 1 and 10")
        if not 0.0 <= self.control_share < 1.0:
            raise SimulationError(f"--control-share {self.control_share} must be in [0, 1)")

    @property
    def retrain_after(self) -> int:
        """Days before retraining (the first half)."""
        return self.days // 2


class SimClock:
    """The service's clock during a simulation: set by the simulator, never backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def advance_to(self, when: datetime) -> None:
        with self._lock:
            self._now = max(self._now, when)


@dataclass
class Bank:
    """The prepared bank of one run."""

    settings: Settings
    tables: Tables
    catalogue: Catalogue
    behaviour: HiddenBehaviour
    first_day: date
    versions: dict[str, int]


@dataclass
class Tally:
    """What the simulated customers did (counts for the report)."""

    decisions: int = 0
    control_decisions: int = 0
    offers_shown: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    shown_before: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: set[tuple[str, str]] = field(default_factory=set)


def _last_month_end(day: date) -> date:
    return day.replace(day=1) - timedelta(days=1)


def run_settings(base: Settings, redis_url: str, plan: SimulationPlan, run_id: str) -> Settings:
    """The settings of one run: its own folder, Redis prefixes and control share."""
    tail = f":sim-{run_id}"
    return base.model_copy(
        update={
            "home": base.home / "simulations" / run_id,
            # A registry of the run's own: the simulation's champions must never replace
            # those of a registry NBO_MLFLOW_TRACKING_URI names.
            "mlflow_tracking_uri": None,
            "redis_url": redis_url,
            "feature_prefix": base.feature_prefix + tail,
            "contact_prefix": base.contact_prefix + tail,
            "events_prefix": base.events_prefix + tail,
            "audit_prefix": base.audit_prefix + tail,
            "control_share": plan.control_share,
            "challenger_share": 0.0,
            "shadow_mode": False,
            "log_level": "warning",  # the service's per-request log would drown the progress
        }
    )


def prepare(settings: Settings, plan: SimulationPlan, today: date, progress: Progress) -> Bank:
    """Generate, train, promote and materialize the run's bank (step 1)."""
    from core.catalogue import load_catalogue
    from core.moments import load_moments
    from core.redis_server import connect
    from core.tables import contract_products, write_tables
    from features.materialize import materialize
    from features.online_store import OnlineStore
    from features.synthetic import generate_bank
    from registry.client import Registry
    from training.churn import train_churn
    from training.datasets import DatasetError
    from training.recommender import train_recommender

    catalogue = load_catalogue(settings.catalogue_path)
    # The simulated days lie in the past of the real clock: the audit and event streams
    # are read from stream ids of real time, which must not precede the simulated ones.
    end_month = _last_month_end(today - timedelta(days=plan.days))
    progress(f"generating {plan.customers:,} customers, {plan.months} months to {end_month}")
    tables = generate_bank(plan.customers, plan.months, plan.seed, catalogue, end_month)
    write_tables(
        tables, settings.data_dir, [p.id for p in catalogue.holdable], contract_products(catalogue)
    )
    registry = Registry(settings)
    versions = {}
    for job, name in (
        (train_recommender, settings.recommender_model_name),
        (train_churn, settings.churn_model_name),
    ):
        progress(f"training and promoting {name}")
        try:
            result = job(tables, catalogue, settings, progress=_labelled(progress, name))
        except DatasetError as exc:
            if name == settings.recommender_model_name:
                raise
            progress(f"{name} not trained ({exc}); the service runs without it")
            continue
        registry.promote(name, result.version, "champion")
        versions[name] = result.version
    progress(f"materializing features as of {end_month}")
    store = OnlineStore.for_settings(connect(settings), settings)
    materialize(
        tables,
        end_month,
        catalogue,
        store,
        keep_versions=settings.feature_versions_kept,
        moments=load_moments(settings.moments_path),
    )
    behaviour = HiddenBehaviour.for_bank(
        tables.customers, plan.months, plan.seed, catalogue, end_month
    )
    first_day = end_month + timedelta(days=1)
    return Bank(settings, tables, catalogue, behaviour, first_day, versions)


def _labelled(progress: Progress, label: str) -> Progress:
    return lambda message: progress(f"{label}: {message}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(settings: Settings, clock: SimClock) -> Iterator[tuple[httpx.Client, Any]]:
    """The real app with ``clock``, under uvicorn in a thread; yields a client with an
    all-scope key (development mode, this run only) and the app."""
    import uvicorn

    from cli.demo import _with_demo_key
    from service.app import create_app

    key, served = _with_demo_key(settings)
    app = create_app(served, clock=clock)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="nbo-simulate-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SimulationError("the service did not start (see the log above)")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as client:
            yield client, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code >= 300:
        raise SimulationError(f"POST {path} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


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
            answer = _post(client, "/v1/recommendations", body)
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
                _post(
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
                _post(
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
        progress=_labelled(progress, "nbo-response"),
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
        promote(Registry(settings), name, result.version, "champion")
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


def simulate(
    settings: Settings, plan: SimulationPlan, today: date, progress: Progress
) -> dict[str, Any]:
    """The whole loop (steps 1-5); the run's report (plain JSON types)."""
    from core.redis_server import resolve_redis_url

    started = time.perf_counter()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    sim = run_settings(settings, resolve_redis_url(settings), plan, run_id)
    bank = prepare(sim, plan, today, progress)
    clock = SimClock(datetime.combine(bank.first_day, datetime.min.time(), UTC))
    tally = Tally()
    with serving(sim, clock) as (client, app):
        run_days(client, app, bank, plan, clock, range(plan.retrain_after), tally, progress)
        retrained = retrain(client, bank, plan, progress)
        run_days(
            client, app, bank, plan, clock, range(plan.retrain_after, plan.days), tally, progress
        )
        app.state.runtime.audit.flush()
    progress("outcomes report")
    reports = outcomes(bank, plan, tally)
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
    }


def write_report(report: dict[str, Any], out: Path) -> None:
    """The JSON report next to the run (for docs and comparisons)."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
