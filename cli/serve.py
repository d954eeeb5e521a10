"""``nbo serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import os
import tempfile
from collections.abc import MutableMapping

import typer

from cli.errors import exit_on
from core.embedded_redis import RedisUnavailableError
from core.redis_server import resolve_redis_url
from core.settings import UnsafeSettingsError, get_settings

WORKER_HEALTHCHECK_SECONDS = 30


def serve(
    host: str | None = typer.Option(None, help="Bind address (default: NBO_HOST)."),
    port: int | None = typer.Option(None, help="Port (default: NBO_PORT)."),
    workers: int | None = typer.Option(
        None, min=1, help="Worker processes (default: NBO_WORKERS)."
    ),
) -> None:
    """Serve the API (POST /v1/recommendations, /healthz, /readyz, /metrics, /docs).

    Models, Redis and the feature prefix come from the NBO_* settings. Each worker builds
    its own app from them. Outside NBO_ENVIRONMENT=development it refuses to start with the
    demo pseudonym key, without API keys or with auth disabled, and when the embedded Redis
    port is taken by another home's server (exit code 2).

    Example: nbo serve --port 8000
    """
    import uvicorn

    # Workers inherit this before numpy loads, so no BLAS thread pool is ever started
    # (create_app also limits it for servers started another way).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

    settings = get_settings()
    # Said once here, not by a traceback per worker: unsafe settings, or an embedded Redis
    # port held by another home's server.
    with exit_on(UnsafeSettingsError, RedisUnavailableError):
        settings.refuse_unsafe()
        resolve_redis_url(settings)
    worker_count = workers if workers is not None else settings.workers
    prepare_multiprocess_metrics(worker_count, os.environ)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=worker_count,
        log_level=settings.log_level,
        # The service writes its own structured access log (with request ids, no paths
        # beyond route templates); uvicorn's would duplicate every line.
        access_log=False,
        # A worker loads its models before it answers the supervisor's health check; on a
        # busy host that takes longer than uvicorn's 5 s, and the supervisor would kill and
        # respawn it forever (seen with 2 workers at load average 13).
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


def prepare_multiprocess_metrics(workers: int, environ: MutableMapping[str, str]) -> str | None:
    """With several workers, point prometheus-client at a multiprocess directory.

    Set before uvicorn starts the workers (they inherit it before importing
    prometheus-client, which picks its value store at import): each worker then writes its
    metrics to files there and ``/metrics`` aggregates them (``service.infra.metrics``). A
    directory the operator already set is used as is; otherwise a fresh temporary one, so
    counts never carry over from an earlier run. One worker keeps plain in-memory metrics.
    """
    if workers <= 1:
        return None
    if not environ.get("PROMETHEUS_MULTIPROC_DIR"):
        environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nbo-metrics-")
    return environ["PROMETHEUS_MULTIPROC_DIR"]
