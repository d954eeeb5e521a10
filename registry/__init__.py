"""Models <-> MLflow: registration, aliases (champion / challenger), history, loading.

Knows MLflow, not Redis. The service loads scorers through :class:`Registry`.
"""

from registry.client import (
    LoadedModel,
    ModelNotFoundError,
    Registry,
    RegistryError,
    VersionInfo,
)

__all__ = ["LoadedModel", "ModelNotFoundError", "Registry", "RegistryError", "VersionInfo"]
