"""The FastAPI application factory (``uvicorn --factory service.app:create_app``).

Startup (lifespan): connect to Redis, load the catalogue and the serving models, read the
live feature-set pointer, then keep that pointer fresh, watch the model aliases
(``service.infra.model_watcher``: hot reload) and flush the per-request metrics
(``service.infra.metric_batch``) in the background. Nothing that can
be missing at startup stops the service: without a recommender or a feature set it starts
not ready (``/readyz`` 503) and answers with the degraded fallback. A broken catalogue
does stop it, and so does a broken decisioning file: there is no safe answer without the
product and channel rules. Neither do unsafe settings outside development mode
(``Settings.refuse_unsafe``: the demo pseudonym key, no API keys, auth disabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from core.catalogue import load_catalogue
from core.decisioning import load_decisioning
from core.settings import Settings, get_settings
from features.online_store import OnlineStore
from service.api.docs_pages import install_docs_pages
from service.api.errors import UnexpectedErrors, install_error_handlers
from service.api.events import document_product_ids
from service.api.guards import install_guards
from service.api.middleware import RequestObservation, RouteTemplates
from service.api.recommendations import add_recommendation_route
from service.api.routes import router
from service.console.mount import install_console
from service.infra.audit_writer import AuditWriter
from service.infra.coalesced_reads import CoalescedReader
from service.infra.feature_pointer import keep_feature_pointer_fresh, refresh_feature_pointer
from service.infra.log import configure_logging, fields
from service.infra.metrics import ServiceMetrics
from service.infra.model_loading import bound_registry_requests, load_serving_models
from service.infra.model_watcher import ModelWatcher
from service.infra.redis_guard import connect_guarded, connect_guarded_async
from service.infra.score_pointer import refresh_score_set
from service.infra.state import ServingState, StateHolder
from service.runtime import Runtime, system_clock

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """A new service app; ``settings`` default to the environment (``NBO_*``); ``clock``
    (decision and event time) to the system clock: only ``nbo simulate`` passes its own.

    Raises ``core.settings.UnsafeSettingsError`` (one line per problem) for settings that
    are unsafe outside ``NBO_ENVIRONMENT=development``.
    """
    settings = settings or get_settings()
    settings.refuse_unsafe()
    configure_logging(settings.log_level)
    # Per-request numpy work is tiny: a BLAS thread pool per worker only makes the workers
    # fight over the cores.
    threadpool_limits(limits=1, user_api="blas")
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(_start, settings, metrics, clock)
        app.state.runtime = runtime
        freeze_startup_objects()
        watcher = runtime.watcher
        refresher = asyncio.create_task(keep_feature_pointer_fresh(runtime))
        flusher = asyncio.create_task(metrics.flush_every(settings.metrics_flush_seconds))
        watcher.start()
        runtime.audit.start()
        try:
            yield
        finally:
            gc.unfreeze()  # what this app froze is collectable again (tests build many apps)
            await asyncio.to_thread(runtime.audit.stop)
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await asyncio.to_thread(watcher.stop)
            runtime.redis.close()
            # Best effort: a test client may have driven requests from another event
            # loop, whose connections this loop cannot close (the process ends anyway).
            with contextlib.suppress(RuntimeError):
                await runtime.reader.aclose()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            metrics.flush()  # the last requests' observations: nothing observed is lost
            metrics.worker_exiting()
            log.info("service stopped")

    app = FastAPI(
        title="Next best offer",
        version="1.0",
        summary="Suitable next best offers for retail-bank customers.",
        lifespan=lifespan,
        # Served by install_docs_pages from the package, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # No redirect for a trailing slash: Starlette builds its Location from the Host
        # header, which the caller controls. "/v1/recommendations/" is a 404.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    add_recommendation_route(app.router)  # the hot route: first, on the app's own router
    app.include_router(router)
    install_docs_pages(app)
    install_console(app)  # /console: its own session login (service/console/session.py)
    install_guards(app, settings)
    document_product_ids(app, load_catalogue(settings.catalogue_path))
    app.add_middleware(UnexpectedErrors)  # a 500 of our own, never re-raised to the server
    # Added last, so outermost: every answer, the guards' refusals included, is logged.
    templates = RouteTemplates(
        document=app.openapi,
        plain_paths=lambda: [
            p for r in app.router.routes if isinstance(p := getattr(r, "path", None), str)
        ],
    )
    app.add_middleware(RequestObservation, metrics=metrics, templates=templates)
    return app


def freeze_startup_objects() -> None:
    """Exempt what startup built (libraries, models, catalogue) from garbage collection.

    Why: a full (generation 2) collection walks every tracked object, the loaded models'
    included, and every request on the worker waits for it: a stall in the p99 tail under
    load. Those objects live as long as the process; ``gc.freeze`` moves them to the
    permanent generation, so later collections walk only what requests allocate. Objects
    of a model loaded later are collected normally.
    """
    gc.collect()
    gc.freeze()


def _start(
    settings: Settings, metrics: ServiceMetrics, clock: Callable[[], datetime] | None = None
) -> Runtime:
    """Blocking startup work (run off the event loop)."""
    client = connect_guarded(settings, metrics)  # short timeouts + circuit breaker
    catalogue = load_catalogue(settings.catalogue_path)
    decisioning = load_decisioning(settings.decisioning_path, catalogue)
    state = ServingState(catalogue=catalogue, decisioning=decisioning)
    bound_registry_requests(settings, os.environ)  # a hung MLflow must not stall startup
    for loaded in load_serving_models(settings):
        state = state.with_model(loaded.slot.key, loaded.model, loaded.source)
    metrics.set_serving(state)
    holder = StateHolder(state)
    runtime = Runtime(
        settings=settings,
        redis=client,
        reader=CoalescedReader(
            connect_guarded_async(settings, client.breaker), on_sent=metrics.observe_reads_sent
        ),
        store=OnlineStore.for_settings(client, settings),
        state=holder,
        metrics=metrics,
        audit=AuditWriter(
            client,
            settings,
            on_outcome=metrics.observe_audit,
            on_error=partial(metrics.observe_redis_error, "audit_write"),
        ),
        watcher=ModelWatcher(settings, holder, metrics),
        clock=clock or system_clock,
    )
    metrics.track_feature_set(lambda: holder.current.feature_set)
    feature_set = refresh_feature_pointer(runtime)
    refresh_score_set(runtime)
    log.info(
        "service started",
        extra=fields(
            catalogue=catalogue.version,
            models=holder.current.model_versions,
            feature_set=feature_set.version if feature_set is not None else None,
        ),
    )
    return runtime
