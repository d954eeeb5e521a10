"""The bank of one ``nbo simulate`` run: what to simulate, and everything set up before
the first simulated day.

``prepare`` generates a synthetic bank whose last snapshot ends before the simulated days,
trains and promotes the recommender and churn models and materializes the features, in a
run folder of its own (``NBO_HOME/simulations/<run>``: tables, MLflow registry, even when
``NBO_MLFLOW_TRACKING_URI`` names another) and under Redis key prefixes of its own (each
prefix + ``:sim-<run>``), so runs never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from core.catalogue import Catalogue
from core.settings import Settings
from core.tables import Tables
from features.synthetic_response import HiddenBehaviour

Progress = Callable[[str], None]


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
    baseline: bool = True
    """Also run the baseline arm: the same bank and days, never retrained."""

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


@dataclass
class Bank:
    """The prepared bank of one run."""

    settings: Settings
    tables: Tables
    catalogue: Catalogue
    behaviour: HiddenBehaviour
    first_day: date
    versions: dict[str, int]


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
            result = job(tables, catalogue, settings, progress=labelled(progress, name))
        except DatasetError as exc:
            if name == settings.recommender_model_name:
                raise
            progress(f"{name} not trained ({exc}); the service runs without it")
            continue
        registry.promote(name, result.registered_version, "champion")
        versions[name] = result.registered_version
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


def labelled(progress: Progress, label: str) -> Progress:
    return lambda message: progress(f"{label}: {message}")
