"""Hot reload: follow the model aliases and swap new versions in without a dropped request.

A daemon thread checks every ``model_poll_seconds`` (0 turns polling off) and
``POST /admin/reload`` checks at once; both run :meth:`ModelWatcher.check`, one at a time.
For each slot whose alias now points at another version, the new version is downloaded
and validated (``service.infra.model_loading.validate``: kind, shapes, input features against
the live feature set, smoke inputs) in that thread, then swapped in with one
``StateHolder.update``. Requests read ``holder.current`` once, so each one is served
entirely by the old or entirely by the new models. A version that fails is refused,
logged and counted (``nbo_model_reloads_total{outcome="refused"}``); the old one keeps
serving, and the refused version is not retried by polling (``/admin/reload`` retries).

Nothing here runs on the request path.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from core.settings import Settings
from registry.client import ModelNotFoundError, Registry
from service.infra.log import fields
from service.infra.metrics import ServiceMetrics
from service.infra.model_loading import SOURCE_REGISTRY, Slot, remember, serving_slots, validate
from service.infra.state import StateHolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    """What one check did for one slot. ``outcome``: unchanged, swapped, refused, removed,
    error (registry unreachable)."""

    slot: str
    model: str
    alias: str
    outcome: str
    version: int | None
    detail: str = ""


class ModelWatcher:
    def __init__(self, settings: Settings, holder: StateHolder, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics
        self.slots = serving_slots(settings)
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[tuple[str, str, int]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling (no-op when ``model_poll_seconds`` is 0)."""
        if self.settings.model_poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nbo-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.settings.model_poll_seconds):
            try:
                self.check(retry_refused=False)
            except Exception:  # the watcher must outlive any surprise
                log.exception("model watcher check failed")

    # -- one check ----------------------------------------------------------------------------

    def check(self, retry_refused: bool = True) -> list[ReloadResult]:
        """Compare every slot's alias with what serves; load, validate and swap changes."""
        with self._check_lock:
            if retry_refused:
                self._refused.clear()
            try:
                registry = Registry(self.settings)
            except Exception as exc:
                return [self._count(self._error(slot, exc)) for slot in self.slots]
            return [self._count(self._check_slot(registry, slot)) for slot in self.slots]

    def _check_slot(self, registry: Registry, slot: Slot) -> ReloadResult:
        state = self.holder.current
        serving = getattr(state, slot.key)
        source = state.model_sources.get(slot.key)
        current = serving.version if serving is not None else None
        try:
            wanted = registry.alias_version(slot.name, slot.alias)
        except ModelNotFoundError as exc:
            if slot.optional:  # an optional model not registered (yet), or deleted
                return self._alias_gone(slot, current)
            return self._error(slot, exc)
        except Exception as exc:  # unreachable registry or model gone: keep serving
            return self._error(slot, exc)
        if wanted is None:
            return self._alias_gone(slot, current)
        if wanted == current and source == SOURCE_REGISTRY:
            return ReloadResult(slot.key, slot.name, slot.alias, "unchanged", current)
        if (slot.name, slot.alias, wanted) in self._refused:
            return ReloadResult(slot.key, slot.name, slot.alias, "unchanged", current)
        try:
            loaded = registry.load_version(slot.name, wanted, alias=slot.alias)
            problem = validate(loaded, slot.kind, _feature_names(self.holder))
        except Exception as exc:  # corrupt artifact, download failure, ...
            problem = f"cannot load: {exc}"
        if problem:
            self._refused.add((slot.name, slot.alias, wanted))
            log.error(
                "model version refused",
                extra=fields(model=slot.name, alias=slot.alias, version=wanted, error=problem),
            )
            return ReloadResult(slot.key, slot.name, slot.alias, "refused", wanted, problem)
        new_state = self.holder.update(lambda s: s.with_model(slot.key, loaded, SOURCE_REGISTRY))
        self.metrics.set_serving(new_state)
        remember(self.settings, loaded)
        log.info(
            "model swapped",
            extra=fields(model=slot.name, alias=slot.alias, previous=current, version=wanted),
        )
        return ReloadResult(slot.key, slot.name, slot.alias, "swapped", wanted)

    def _alias_gone(self, slot: Slot, current: int | None) -> ReloadResult:
        """The alias points nowhere. A challenger is retired (its traffic goes back to the
        champion); a champion keeps serving - no alias is no reason to stop answering."""
        if current is None:
            return ReloadResult(slot.key, slot.name, slot.alias, "unchanged", None)
        if slot.key != "challenger":
            log.warning(
                "serving alias removed; keeping the loaded version",
                extra=fields(model=slot.name, alias=slot.alias, version=current),
            )
            return ReloadResult(slot.key, slot.name, slot.alias, "unchanged", current)
        new_state = self.holder.update(lambda s: s.with_model(slot.key, None, None))
        self.metrics.set_serving(new_state)
        log.info("challenger retired", extra=fields(model=slot.name, version=current))
        return ReloadResult(slot.key, slot.name, slot.alias, "removed", current)

    def _error(self, slot: Slot, exc: Exception) -> ReloadResult:
        detail = f"{type(exc).__name__}: {exc}"
        log.warning(
            "model alias check failed; keeping the loaded version",
            extra=fields(model=slot.name, alias=slot.alias, error=detail),
        )
        return ReloadResult(slot.key, slot.name, slot.alias, "error", None, detail)

    def _count(self, result: ReloadResult) -> ReloadResult:
        """Count everything but "unchanged" (every poll would count that)."""
        if result.outcome != "unchanged":
            self.metrics.observe_reload(result.model, result.outcome)
        return result


def _feature_names(holder: StateHolder) -> list[str] | None:
    feature_set = holder.current.feature_set
    return list(feature_set.feature_names) if feature_set is not None else None
