"""Load and validate the serving models: at startup, and for every hot reload.

Five slots: ``recommender``, ``churn``, ``maturity`` and ``response`` (the ``serving_alias``,
champion by default; the maturity outflow and offer-response models are optional: without
them the service answers as it does without them, see ``service.decision.acceptance``) and
``challenger`` (the recommender's ``challenger`` alias, loaded only when
challenger traffic or shadow mode is configured).

Startup: if the registry cannot be reached, hangs (requests are bounded by
``mlflow_request_timeout_seconds`` and ``mlflow_request_retries``), has no such model or
alias (e.g. an empty store at a lost path), or the download fails, the last-known-good
copy from ``service.infra.model_cache`` is served instead and its source is reported as
``cache``. With no cached copy either, the service starts without that model (degraded
answers, ``/readyz`` 503 for the recommender). A challenger is never loaded from the cache
when its alias is gone.

Validation (``validate``) is what a new version must pass before it serves: the right
kind, consistent shapes, every input feature present in the live feature set (for a
response model: every input one that ``features.response_features.contact_features``
computes - its record inputs are optional), and finite scores of the right shape for fixed
smoke inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from core.settings import Settings
from features.response_features import FEATURE_NAMES as RESPONSE_FEATURES
from features.response_features import contact_features
from registry.client import LoadedModel, ModelNotFoundError, Registry
from service.decision.contact_policy import ContactEntry
from service.infra import model_cache
from service.infra.log import fields

log = logging.getLogger(__name__)

SOURCE_REGISTRY = "registry"
SOURCE_CACHE = "cache"


@dataclass(frozen=True)
class Slot:
    """One model the service serves: which state field, registered name, alias, kind."""

    key: str  # ServingState field: recommender | churn | challenger | maturity | response
    name: str
    alias: str
    kind: str
    optional: bool = False  # a registry without this model is normal, not an error


@dataclass(frozen=True)
class Loaded:
    slot: Slot
    model: LoadedModel | None
    source: str | None  # registry | cache | None when not loaded


def serving_slots(settings: Settings) -> list[Slot]:
    slots = [
        Slot("recommender", settings.recommender_model_name, settings.serving_alias, "recommender"),
        Slot("churn", settings.churn_model_name, settings.serving_alias, "churn"),
        Slot(
            "maturity",
            settings.maturity_model_name,
            settings.serving_alias,
            "maturity",
            optional=True,
        ),
        Slot(
            "response",
            settings.response_model_name,
            settings.serving_alias,
            "response",
            optional=True,
        ),
    ]
    if settings.challenger_share > 0 or settings.shadow_mode:
        slots.append(
            Slot("challenger", settings.recommender_model_name, "challenger", "recommender")
        )
    return slots


MLFLOW_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
MLFLOW_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def bound_registry_requests(settings: Settings, environ: MutableMapping[str, str]) -> None:
    """Bound how long the service waits for an HTTP tracking server (MLflow reads these).

    MLflow's own defaults (120 s per request, 7 retries with backoff) would hold the
    service's startup for many minutes while a registry hangs, before the last-known-good
    cache could serve; the batch jobs keep MLflow's patient defaults.
    """
    environ[MLFLOW_TIMEOUT_ENV] = str(settings.mlflow_request_timeout_seconds)
    environ[MLFLOW_RETRIES_ENV] = str(settings.mlflow_request_retries)


def load_serving_models(settings: Settings) -> list[Loaded]:
    """Every slot as loaded at startup (registry first, last-known-good cache second)."""
    return [load_at_startup(settings, slot) for slot in serving_slots(settings)]


def load_at_startup(settings: Settings, slot: Slot) -> Loaded:
    ctx = {"model": slot.name, "alias": slot.alias}
    try:
        loaded = Registry(settings).load(slot.name, slot.alias)
    except ModelNotFoundError as exc:
        # A registry without the model or alias - e.g. an empty store at a wrong or lost
        # path - is no reason to start a champion without a model while a last-known-good
        # copy exists (the watcher likewise keeps a champion whose alias goes away). A
        # challenger without its alias is retired, so it is not loaded from the cache.
        # An optional model (maturity, response) never registered is normal: info, not warning.
        level = logging.INFO if slot.optional else logging.WARNING
        log.log(level, "model not loaded", extra=fields(**ctx, error=str(exc)))
        if slot.key == "challenger":
            return Loaded(slot, None, None)
        return _from_cache(settings, slot, missing_ok=True)
    except Exception as exc:  # registry unreachable, artifact unreadable: any cause alike
        log.error("registry load failed", extra=fields(**ctx, error=f"{type(exc).__name__}: {exc}"))
        return _from_cache(settings, slot)
    problem = validate(loaded, slot.kind, feature_names=None)
    if problem:
        log.error("model rejected", extra=fields(**ctx, version=loaded.version, error=problem))
        return _from_cache(settings, slot)
    remember(settings, loaded)
    log.info("model loaded", extra=fields(**ctx, version=loaded.version, source=SOURCE_REGISTRY))
    return Loaded(slot, loaded, SOURCE_REGISTRY)


def _from_cache(settings: Settings, slot: Slot, *, missing_ok: bool = False) -> Loaded:
    """The cached copy; ``missing_ok``: no copy is expected (not logged as an error)."""
    ctx = {"model": slot.name, "alias": slot.alias}
    try:
        cached = model_cache.load(settings.model_cache_dir, slot.name, slot.alias)
    except model_cache.ModelCacheError as exc:
        level = logging.INFO if missing_ok else logging.ERROR
        log.log(level, "no last-known-good model", extra=fields(**ctx, error=str(exc)))
        return Loaded(slot, None, None)
    problem = validate(cached, slot.kind, feature_names=None)
    if problem:
        log.error("cached model rejected", extra=fields(**ctx, error=problem))
        return Loaded(slot, None, None)
    log.warning(
        "serving last-known-good model from cache",
        extra=fields(**ctx, version=cached.version, source=SOURCE_CACHE),
    )
    return Loaded(slot, cached, SOURCE_CACHE)


def remember(settings: Settings, loaded: LoadedModel) -> None:
    """Keep a validated model as last known good; a full disk must not stop serving."""
    try:
        model_cache.save(settings.model_cache_dir, loaded)
    except OSError as exc:
        log.error(
            "model cache write failed",
            extra=fields(model=loaded.name, version=loaded.version, error=str(exc)),
        )


# -- validation ---------------------------------------------------------------------------


def smoke_records(feature_names: list[str]) -> list[dict[str, Any]]:
    """Fixed inputs every serving model must score: all features zero, all missing, and a
    typical adult customer (the record shape of ``docs/CONTRACTS.md``)."""
    zeros: dict[str, Any] = dict.fromkeys(feature_names, 0.0)
    zeros.update(held=[], tier="mass", segment=None)
    typical: dict[str, Any] = dict.fromkeys(feature_names, 1.0)
    typical.update(
        age=45,
        risk_level=3,
        income=40_000.0,
        balance=25_000.0,
        tenure_months=60,
        months_since_login=0,
        held=["current_account"],
        tier="affluent",
    )
    return [zeros, {}, typical]


def validate(loaded: LoadedModel, kind: str, feature_names: list[str] | None) -> str | None:
    """Why ``loaded`` must not serve, or ``None`` when it may.

    ``feature_names`` are those of the live feature set; ``None`` (none live yet, or at
    startup) skips the input-schema check - it runs again on the next reload.
    """
    scorer = loaded.scorer
    if scorer.kind != kind:
        return f"expected a {kind} scorer, got kind {scorer.kind!r}"
    inputs = list(getattr(scorer, "feature_names", []))
    if kind == "response":  # computed per request from the record and the contact entries
        unknown = sorted(set(inputs) - set(RESPONSE_FEATURES))
        if unknown:
            return f"{len(unknown)} inputs the service does not compute: {', '.join(unknown[:5])}"
    elif feature_names is not None:
        missing = sorted(set(inputs) - set(feature_names))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            return f"{len(missing)} input features not in the live feature set: {shown}"
    if kind == "recommender":
        products = len(getattr(scorer, "product_ids", []))
        popularity = len(getattr(scorer, "popularity", []))
        if products == 0 or products != popularity:
            return f"{products} product ids but {popularity} popularity values"
    for number, record in enumerate(smoke_records(inputs), start=1):
        try:
            problem = _smoke(scorer, kind, record)
        except Exception as exc:  # anything a broken model raises is a refusal
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem:
            return f"smoke input {number}: {problem}"
    return None


SMOKE_CONTRACT: dict[str, Any] = {
    "contract": "0" * 32,
    "product": "short_term_deposit",
    "opened_on": "2025-01-15",
    "maturity_date": "2025-04-15",
    "amount": 10_000.0,
}
"""A typical maturing deposit (an entry of the ``maturities`` field) for the smoke inputs."""
SMOKE_TODAY = date(2025, 4, 10)
SMOKE_NOW = datetime(2025, 4, 10, 10, tzinfo=UTC).timestamp()


SMOKE_HISTORY = (
    ContactEntry("shown", "credit_card", "app", SMOKE_NOW - 9 * 86_400.0),
    ContactEntry("declined", "credit_card", "app", SMOKE_NOW - 8 * 86_400.0),
    ContactEntry("shown", "credit_card", "push", SMOKE_NOW - 2 * 86_400.0),
)
"""A contact history for the response model's smoke inputs: shown, declined, shown again."""


def _smoke(scorer: Any, kind: str, record: dict[str, Any]) -> str | None:
    if kind == "response":
        rows = [
            contact_features(record, product, "app", SMOKE_HISTORY, SMOKE_NOW)
            for product in ("credit_card", "funds")
        ]
        values = np.asarray(scorer.accept_probabilities(rows), dtype=np.float64)
        if values.shape != (len(rows),):
            return f"accept probabilities of shape {values.shape}, expected ({len(rows)},)"
        if not (np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()):
            return f"accept probabilities {values.tolist()} outside [0, 1]"
        return None
    if kind == "maturity":
        probability = float(scorer.outflow_probability(record, SMOKE_CONTRACT, SMOKE_TODAY))
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            return f"outflow probability {probability!r} outside [0, 1]"
        return None
    if kind == "recommender":
        scores = np.asarray(scorer.score(record), dtype=np.float64)
        if scores.shape != (len(scorer.product_ids),):
            return f"scores of shape {scores.shape}, expected ({len(scorer.product_ids)},)"
        if not np.isfinite(scores).all():
            return "non-finite scores"
        return None
    probability = float(scorer.predict_proba(record))
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        return f"churn probability {probability!r} outside [0, 1]"
    return None
