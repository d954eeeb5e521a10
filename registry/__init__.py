"""Models <-> MLflow: registration, aliases (champion / challenger), history, loading.

Knows MLflow, not Redis. The service loads scorers through :class:`Registry`;
``registry.promotion`` gates alias moves, ``registry.history`` reads them back,
``registry.compare`` and ``registry.replay`` help decide.
"""

from registry.client import (
    LoadedModel,
    ModelNotFoundError,
    Registry,
    RegistryError,
    RunData,
    VersionInfo,
)

__all__ = [
    "LoadedModel",
    "ModelNotFoundError",
    "Registry",
    "RegistryError",
    "RunData",
    "VersionInfo",
]
