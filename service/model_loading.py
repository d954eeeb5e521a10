"""Load the serving models (the ``serving_alias`` of each registered model) at startup.

A model that cannot be loaded is reported and left out: without a churn model the service
answers with ``churn_risk: null``; without a recommender it starts anyway, reports not
ready and answers every request with the degraded fallback.
"""

from __future__ import annotations

import logging

from core.settings import Settings
from registry.client import LoadedModel, ModelNotFoundError, Registry, RegistryError
from service.log import fields

log = logging.getLogger(__name__)


def load_serving_models(settings: Settings) -> tuple[LoadedModel | None, LoadedModel | None]:
    """``(recommender, churn)`` as loaded from the registry, ``None`` where unavailable."""
    registry = Registry(settings)
    alias = settings.serving_alias
    recommender = load_model(registry, settings.recommender_model_name, alias, "recommender")
    churn = load_model(registry, settings.churn_model_name, alias, "churn")
    return recommender, churn


def load_model(registry: Registry, name: str, alias: str, kind: str) -> LoadedModel | None:
    """The model ``name@alias`` if it exists and is a scorer of ``kind``, else ``None``."""
    try:
        loaded = registry.load(name, alias)
    except ModelNotFoundError as exc:
        log.warning("model not loaded", extra=fields(model=name, alias=alias, error=str(exc)))
        return None
    except RegistryError as exc:
        log.error("model failed to load", extra=fields(model=name, alias=alias, error=str(exc)))
        return None
    problem = _shape_problem(loaded, kind)
    if problem:
        log.error("model rejected", extra=fields(model=name, version=loaded.version, error=problem))
        return None
    log.info("model loaded", extra=fields(model=name, alias=alias, version=loaded.version))
    return loaded


def _shape_problem(loaded: LoadedModel, kind: str) -> str | None:
    scorer = loaded.scorer
    if scorer.kind != kind:
        return f"expected a {kind} scorer, got kind {scorer.kind!r}"
    if kind == "recommender":
        products = len(getattr(scorer, "product_ids", []))
        popularity = len(getattr(scorer, "popularity", []))
        if products == 0 or products != popularity:
            return f"{products} product ids but {popularity} popularity values"
    return None
