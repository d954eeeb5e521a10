"""The MLflow facade: log, register, list, promote and load the service's models.

Everything goes through one ``MlflowClient`` bound to ``settings.tracking_uri`` (tracking
and registry alike), never through MLflow's process-global tracking URI, so two
``Registry`` objects with different settings (tests, a CLI job next to the service) can
never write into each other's store.

A model version is an MLflow pyfunc model whose single artifact is the pickled scorer
(``artifacts/scorer.pkl``). ``Registry.load`` unpickles that file directly (the service does
not need the pyfunc wrapper), through :mod:`core.scoring.compat` so versions pickled before a
class moved still load; ``mlflow.pyfunc.load_model(version.source)`` also works for
anyone exploring a version in a notebook. Unpickling runs code from the artifact store, so
the store must be as trusted as the code base (it is written only by our training jobs).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from core.scoring.base import ChurnScorer, RecommenderScorer
from core.scoring.compat import load_scorer
from core.scoring.maturity import RegisteredMaturityScorer
from core.scoring.response import ResponseScorer
from core.settings import Settings
from registry import lineage, logged_model
from registry.history import (
    MOVED,
    REFUSED,
    UNSET,
    AliasEvent,
    current_actor,
    events_from_tags,
    now_utc,
    tag_key,
)
from registry.metric_groups import grouped, plain
from registry.pyfunc import (
    SCORER_FILE,
    ScorerPyfunc,  # noqa: F401 - older versions' model code imports it from here
)

AnyScorer = RecommenderScorer | ChurnScorer | RegisteredMaturityScorer | ResponseScorer
"""Every kind of scorer the registry stores."""

EXPERIMENT_NAME = "nbo"
ALLOWED_ALIASES = ("champion", "challenger")
_READY_TIMEOUT_SECONDS = 120.0
_LOCAL_SCHEMES = ("sqlite", "file", "")  # stores whose artifacts we place under NBO home

# Registry downloads are tiny; tqdm bars from them would only clutter a job's or the
# service's stderr. ``setdefault`` leaves an explicit user choice alone.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class RegistryError(RuntimeError):
    """A registry operation failed; the message names the model, version or alias."""


class ModelNotFoundError(RegistryError):
    """The named model, version or alias does not exist in the registry."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version as the CLI and the service see it."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    metrics: dict[str, float]
    created_at: datetime
    status: str
    source: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunData:
    """What the run that produced a version logged (all values as MLflow stores them)."""

    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class LoadedModel:
    """A scorer loaded from the registry, with where it came from."""

    name: str
    version: int
    alias: str
    run_id: str | None
    scorer: AnyScorer


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


class Registry:
    """Models <-> MLflow. Knows MLflow, not Redis."""

    def __init__(self, settings: Settings, experiment: str | None = None) -> None:
        """``experiment`` names the MLflow experiment runs go to (default ``nbo``): trials
        in another experiment stay out of the production one's history."""
        self.settings = settings
        self.experiment_name = experiment or EXPERIMENT_NAME
        self.tracking_uri = settings.tracking_uri
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._experiment_id: str | None = None

    # -- tracking ---------------------------------------------------------------------------

    @property
    def experiment_id(self) -> str:
        """The ``nbo`` experiment, created on first use.

        On a local store (SQLite, file) it is created with ``artifact_location`` under the
        NBO home, so artifacts never land in a ``./mlruns`` of whatever folder a job runs in.
        """
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                scheme = self.tracking_uri.split(":", 1)[0] if ":" in self.tracking_uri else ""
                location = self.settings.artifact_root if scheme in _LOCAL_SCHEMES else None
                if location is not None and self.experiment_name != EXPERIMENT_NAME:
                    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", self.experiment_name)
                    location = f"{location.rstrip('/')}/experiments/{slug}"
                self._experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=location
                )
        return self._experiment_id

    @contextmanager
    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Iterator[str]:
        """Open a run and yield its id; FINISHED on success, FAILED if the body raises
        (KILLED on Ctrl-C). The run gets MLflow's user, source and git commit tags
        (``registry.lineage``) besides ``tags``; ``description`` is the run's note (the
        Description field of the MLflow UI)."""
        system = lineage.source_tags()
        if description:
            system[mlflow_tags.MLFLOW_RUN_NOTE] = description
        run = self.client.create_run(
            self.experiment_id, run_name=run_name, tags={**system, **(tags or {})}
        )
        run_id = run.info.run_id
        try:
            yield run_id
        except KeyboardInterrupt:
            self.client.set_terminated(run_id, status="KILLED")
            raise
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")

    def log_run_data(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log params (stringified), metrics (grouped by prefix: ``registry.metric_groups``)
        and tags to a run in one batch."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(grouped(k), float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    # -- registration -----------------------------------------------------------------------

    def log_and_register(
        self,
        scorer: AnyScorer,
        name: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        artifacts: Mapping[str, Path] | None = None,
        run_id: str | None = None,
        example: Mapping[Any, Any] | None = None,
    ) -> VersionInfo:
        """Log run data and the scorer as a pyfunc model, then register a new version of ``name``.

        ``example`` is one training record: the model's input example is cut from it
        (``registry.model_package``); without one the example holds nulls.

        With ``run_id`` the data goes to that (open) run; without, a run is opened and closed
        here. Registration is the last step: if anything before it fails no version exists,
        and a version that never becomes READY is deleted again, so a failed job leaves no
        orphan version behind.
        """
        _check_protocol(scorer, name)
        if run_id is None:
            with self.start_run(f"{name}-register") as own_run:
                return self.log_and_register(
                    scorer, name, params, metrics, tags, artifacts, own_run, example
                )
        logged = self.log_model(scorer, name, params, metrics, tags, artifacts, run_id, example)
        return self._register(name, logged, run_id)

    def log_model(
        self,
        scorer: AnyScorer,
        name: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        artifacts: Mapping[str, Path] | None = None,
        run_id: str | None = None,
        example: Mapping[Any, Any] | None = None,
    ) -> mlflow.entities.LoggedModel:
        """:meth:`log_and_register` without the registration: the run and its logged model
        (loadable as ``models:/<model_id>``), no version of ``name`` (a trial)."""
        _check_protocol(scorer, name)
        if run_id is None:
            with self.start_run(f"{name}-log") as own_run:
                return self.log_model(
                    scorer, name, params, metrics, tags, artifacts, own_run, example
                )
        self.log_run_data(run_id, params, metrics, tags)
        for artifact in (artifacts or {}).values():
            self.client.log_artifact(run_id, str(artifact))
        run = self.client.get_run(run_id)
        logged = logged_model.log_pyfunc(
            self.client, self.experiment_id, scorer, run, name, example
        )
        logged_model.link_metrics(self.client, logged, run, metrics or {})
        return logged

    def _register(self, name: str, logged: mlflow.entities.LoggedModel, run_id: str) -> VersionInfo:
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name,
            source=logged.artifact_location,
            run_id=run_id,
            model_id=logged.model_id,
            await_creation_for=0,
        )
        try:
            version = self._wait_ready(version)
            logged_model.link_version(self.client, logged, version)
        except BaseException:
            self.client.delete_model_version(name, version.version)
            raise
        return self._info(version)

    def _wait_ready(self, version: ModelVersion) -> ModelVersion:
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while version.status != "READY":
            if version.status == "FAILED_REGISTRATION":
                raise RegistryError(
                    f"{version.name} version {version.version} failed to register: "
                    f"{version.status_message}"
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{version.name} version {version.version} not READY after "
                    f"{_READY_TIMEOUT_SECONDS:.0f}s"
                )
            time.sleep(0.2)
            version = self.client.get_model_version(version.name, version.version)
        return version

    # -- queries ----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Names of every registered model, sorted."""
        return sorted(m.name for m in self.client.search_registered_models())

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, newest first."""
        aliases = self._require_model(name).aliases  # search results carry no aliases
        by_version: dict[int, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(int(version), []).append(alias)
        found = self.client.search_model_versions(f"name = '{_quote(name)}'")
        infos = [
            dataclasses.replace(info, aliases=sorted(by_version.get(info.version, [])))
            for info in map(self._info, found)
        ]
        return sorted(infos, key=lambda v: v.version, reverse=True)

    def version(self, name: str, version: int) -> VersionInfo:
        """One version of ``name``; :class:`ModelNotFoundError` if either is unknown."""
        self._require_model(name)
        try:
            return self._info(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(f"model {name!r} has no version {version}") from exc
            raise

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, ``None`` when unset; unknown model -> error."""
        version = self._require_model(name).aliases.get(alias)
        return int(version) if version is not None else None

    def run_data(self, run_id: str | None) -> RunData:
        """Params, metrics and tags of the run that produced a version (empty without one)."""
        if not run_id:
            return RunData({}, {}, {})
        try:
            data = self.client.get_run(run_id).data
        except MlflowException as exc:
            if _not_found(exc):
                return RunData({}, {}, {})
            raise
        return RunData(dict(data.params), plain(data.metrics), dict(data.tags))

    def history(self, name: str) -> list[AliasEvent]:
        """Every recorded alias move of ``name``, oldest first (see ``registry.history``)."""
        return events_from_tags(self._require_model(name).tags)

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        *,
        reason: str = "",
        actor: str | None = None,
        action: str = "promote",
        forced: bool = False,
        gate: str = "",
    ) -> VersionInfo:
        """Point ``alias`` (champion or challenger) at ``version`` and record the move.

        No quality gate here (that is ``registry.promotion``); this checks that the alias,
        model and version exist and the version is READY, so the alias is unchanged on
        any error. The move and its history event are written one after the other; if
        the event cannot be written the alias is put back, so no move goes unrecorded.
        """
        _check_alias(alias)
        target = self.version(name, version)
        if target.status != "READY":
            raise RegistryError(f"model {name!r} version {version} is {target.status}, not READY")
        model = self._require_model(name)
        previous = model.aliases.get(alias)
        event = self._event(
            model, alias, version, previous, reason, actor, action, forced=forced, gate=gate
        )
        self.client.set_registered_model_alias(name, alias, str(version))
        try:
            self.client.set_registered_model_tag(name, tag_key(event.seq), event.to_json())
        except BaseException:
            if previous is None:
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, str(previous))
            raise
        return self.version(name, version)

    def record_refusal(
        self,
        name: str,
        version: int,
        alias: str,
        *,
        gate: str,
        reason: str = "",
        actor: str | None = None,
    ) -> AliasEvent:
        """Record that the gate refused ``version`` for ``alias`` (the alias does not move)."""
        _check_alias(alias)
        self.version(name, version)
        model = self._require_model(name)
        event = self._event(
            model,
            alias,
            version,
            model.aliases.get(alias),
            reason,
            actor,
            "promote",
            outcome=REFUSED,
            gate=gate,
        )
        self.client.set_registered_model_tag(name, tag_key(event.seq), event.to_json())
        return event

    def unset_alias(
        self, name: str, alias: str, *, reason: str, actor: str | None = None
    ) -> AliasEvent:
        """Remove ``alias`` from ``name`` and record it (``action`` ``unset``, ``version`` the
        version it pointed at). Any alias that is set can be removed, also one set outside
        ``nbo``; an unset one is :class:`ModelNotFoundError`. If the event cannot be
        written the alias is put back."""
        model = self._require_model(name)
        if alias not in model.aliases:
            held = ", ".join(sorted(model.aliases)) or "none"
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r} (aliases: {held})")
        holder = int(model.aliases[alias])
        event = self._event(model, alias, holder, holder, reason, actor, UNSET)
        self.client.delete_registered_model_alias(name, alias)
        try:
            self.client.set_registered_model_tag(name, tag_key(event.seq), event.to_json())
        except BaseException:
            self.client.set_registered_model_alias(name, alias, str(holder))
            raise
        return event

    def _event(
        self,
        model: RegisteredModel,
        alias: str,
        version: int,
        previous: str | int | None,
        reason: str,
        actor: str | None,
        action: str,
        *,
        forced: bool = False,
        outcome: str = MOVED,
        gate: str = "",
    ) -> AliasEvent:
        """The next history event of ``model`` (sequence number after the last recorded)."""
        events = events_from_tags(model.tags)
        return AliasEvent(
            seq=(events[-1].seq + 1) if events else 1,
            alias=alias,
            version=int(version),
            previous=int(previous) if previous is not None else None,
            actor=actor or current_actor(),
            at=now_utc(),
            reason=reason,
            action=action,
            forced=forced,
            outcome=outcome,
            gate=gate,
        )

    def run_artifact(self, run_id: str | None, path: str) -> bytes | None:
        """The bytes of one artifact of a run, ``None`` when the run or the file is absent
        (versions trained before the file was logged)."""
        if not run_id:
            return None
        with tempfile.TemporaryDirectory(prefix="nbo-artifact-") as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except MlflowException as exc:
                if _not_found(exc) or "No such file" in str(exc):
                    return None
                raise
            except OSError:
                return None
            file = Path(local)
            return file.read_bytes() if file.is_file() else None

    def load(self, name: str, alias: str) -> LoadedModel:
        """Download and unpickle the scorer that ``alias`` points at; check its protocol."""
        aliases = self._require_model(name).aliases
        if alias not in aliases:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}")
        return self.load_version(name, int(aliases[alias]), alias=alias)

    def load_version(self, name: str, version: int, alias: str = "") -> LoadedModel:
        """Download and unpickle the scorer of one version (``alias`` is only a label).

        Any failure to read the artifact (missing, truncated, not a pickle of a scorer)
        is a :class:`RegistryError` naming the model and version.
        """
        info = self.version(name, version)
        what = f"model {name!r} version {version}" + (f" ({alias})" if alias else "")
        uri = self.client.get_model_version_download_uri(name, str(version))
        with tempfile.TemporaryDirectory(prefix="nbo-load-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{uri.rstrip('/')}/artifacts/{SCORER_FILE}",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except (MlflowException, OSError) as exc:
                raise RegistryError(f"{what}: cannot download {SCORER_FILE}: {exc}") from exc
            try:
                with open(local, "rb") as fh:
                    scorer = load_scorer(fh)
            except Exception as exc:  # a corrupt pickle can raise almost anything
                raise RegistryError(
                    f"{what}: {SCORER_FILE} is corrupt ({type(exc).__name__}: {exc})"
                ) from exc
        _check_protocol(scorer, f"{name} version {version}")
        return LoadedModel(name, int(version), alias, info.run_id, scorer)

    # -- helpers ----------------------------------------------------------------------------

    def _require_model(self, name: str) -> RegisteredModel:
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(f"no registered model named {name!r}") from exc
            raise

    def _info(self, mv: ModelVersion) -> VersionInfo:
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = plain(self.client.get_run(mv.run_id).data.metrics)
            except MlflowException as exc:
                if not _not_found(exc):
                    raise
        return VersionInfo(
            name=mv.name,
            version=int(mv.version),
            aliases=sorted(mv.aliases),
            run_id=mv.run_id,
            metrics=metrics,
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            status=mv.status,
            source=mv.source,
            tags=dict(mv.tags),
        )


def _check_alias(alias: str) -> None:
    if alias not in ALLOWED_ALIASES:
        raise RegistryError(
            f"alias {alias!r} is not allowed (use one of {', '.join(ALLOWED_ALIASES)})"
        )


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _check_protocol(scorer: object, what: str) -> None:
    kind = getattr(scorer, "kind", None)
    expected = {
        "recommender": RecommenderScorer,
        "churn": ChurnScorer,
        "maturity": RegisteredMaturityScorer,
        "response": ResponseScorer,
    }.get(str(kind))
    if expected is None or not isinstance(scorer, expected):
        raise RegistryError(
            f"{what}: object of type {type(scorer).__name__} (kind={kind!r}) is not a "
            "RecommenderScorer, a ChurnScorer, a MaturityScorer or a ResponseScorer"
        )
