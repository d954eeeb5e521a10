"""Registry test helpers: a migrated empty MLflow store and versions with chosen metrics."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from mlflow.tracking import MlflowClient

from core.settings import Settings
from registry import promotion
from registry.client import Registry, VersionInfo
from registry.holdout import HoldoutValues
from tests.support.scorers import tiny_churn_model

HOLDOUT = "2026-06-30"
FINGERPRINT = "fp-2026-06"
SEEDED_MODEL = "nbo-churn-gate"
SEEDED = {
    # version: (roc_auc, data fingerprint, holdout date); version 1 is the champion
    1: (0.80, FINGERPRINT, HOLDOUT),
    2: (0.85, FINGERPRINT, HOLDOUT),
    3: (0.75, FINGERPRINT, HOLDOUT),
    4: (0.99, "fp-other", HOLDOUT),
    5: (0.99, FINGERPRINT, "2026-07-31"),
    6: (0.99, None, HOLDOUT),
    7: (None, FINGERPRINT, HOLDOUT),
    8: (0.70, FINGERPRINT, HOLDOUT),
    9: (0.81, FINGERPRINT, HOLDOUT),
    10: (0.82, FINGERPRINT, HOLDOUT),
}


@cache
def seeded_store() -> Path:
    """An MLflow store (built once per test process) holding ``SEEDED`` versions of
    ``SEEDED_MODEL``, version 1 champion; tests take a copy with :func:`registry_settings`.

    Migrating a store and registering a version take seconds; doing it once keeps the
    registry tests fast while each still works on a database of its own.
    """
    root = Path(tempfile.mkdtemp(prefix="nbo-seeded-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    registry = Registry(registry_settings(root, migrate(root / "template.db")))
    for auc, fingerprint, holdout in SEEDED.values():
        register_churn(registry, SEEDED_MODEL, auc, fingerprint=fingerprint, holdout=holdout)
    promotion.promote(registry, SEEDED_MODEL, 1, reason="first model")
    return root / "mlflow.db"


def migrate(path: Path) -> Path:
    """Create an empty MLflow SQLite store at ``path``: a copy of one migrated once per test
    process (MLflow's schema migrations take seconds, a copy of the file milliseconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_template(), path)
    return path


def empty_store(path: Path) -> str:
    """Tracking URI of a new empty MLflow SQLite store at ``path`` (:func:`migrate`)."""
    return f"sqlite:///{migrate(path)}"


@cache
def _migrated_template() -> Path:
    root = Path(tempfile.mkdtemp(prefix="nbo-migrated-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    path = root / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def registry_settings(tmp_path: Path, template: Path) -> Settings:
    db = tmp_path / "mlflow.db"
    db.write_bytes(template.read_bytes())
    return Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{db}")


def register_churn(
    registry: Registry,
    name: str,
    roc_auc: float | None,
    *,
    fingerprint: str | None = FINGERPRINT,
    holdout: str | None = HOLDOUT,
    weight: float = 1.0,
    per_row: HoldoutValues | None = None,
) -> VersionInfo:
    """A churn version evaluated on (fingerprint, holdout) with the given ROC-AUC and, with
    ``per_row``, the per-row holdout values the gate bootstraps over (logged as training
    logs them)."""
    tags = {"nbo.kind": "churn"}
    if fingerprint is not None:
        tags["nbo.data_fingerprint"] = fingerprint
    with tempfile.TemporaryDirectory(prefix="nbo-per-row-") as tmp:
        artifacts = {"holdout_values": per_row.write(Path(tmp))} if per_row else {}
        return registry.log_and_register(
            tiny_churn_model(weight),
            name,
            params={"holdout_as_of": holdout} if holdout is not None else {},
            metrics={"roc_auc": roc_auc} if roc_auc is not None else {},
            tags=tags,
            artifacts=artifacts,
        )
