"""Per registered model: who holds champion and challenger, every alias move with who,
when, why, the previous holder and the gate's comparison, and links to the MLflow UI.

Read from the registry on each visit (``registry.client.Registry``: the alias history is
kept in the registry itself, ``registry.history``); the console keeps nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from core.settings import Settings
from registry.client import Registry, VersionInfo
from registry.history import AliasEvent


@dataclass(frozen=True)
class ModelView:
    name: str
    champion: VersionInfo | None
    challenger: VersionInfo | None
    versions: list[VersionInfo]
    history: list[AliasEvent]
    """Newest first."""
    run_links: dict[int, str]
    """Version -> URL of the run that trained it in the MLflow UI."""
    version_links: dict[int, str]


def _holder(versions: list[VersionInfo], alias: str) -> VersionInfo | None:
    return next((v for v in versions if alias in v.aliases), None)


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"


def version_url(base: str, name: str, version: int) -> str:
    return f"{base.rstrip('/')}/#/models/{quote(name)}/versions/{version}"


def models(settings: Settings) -> list[ModelView]:
    """Every registered model; raises ``registry.client.RegistryError`` or MLflow's errors
    when the registry cannot be read."""
    registry = Registry(settings)
    base = settings.mlflow_ui_url
    views = []
    for name in registry.model_names():
        versions = registry.list_versions(name)
        history = list(reversed(registry.history(name)))
        wanted = {v.version for v in versions if v.aliases} | {e.version for e in history}
        wanted |= {e.previous for e in history if e.previous is not None}
        run_links: dict[int, str] = {}
        for v in versions:
            if v.version in wanted and v.run_id:
                experiment = registry.client.get_run(v.run_id).info.experiment_id
                run_links[v.version] = run_url(base, experiment, v.run_id)
        views.append(
            ModelView(
                name=name,
                champion=_holder(versions, "champion"),
                challenger=_holder(versions, "challenger"),
                versions=versions,
                history=history,
                run_links=run_links,
                version_links={v.version: version_url(base, name, v.version) for v in versions},
            )
        )
    return views
