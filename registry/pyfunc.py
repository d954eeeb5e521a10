"""Where older model versions' code finds the pyfunc wrapper.

Versions logged before the wrapper moved to :mod:`core.scoring.pyfunc` (shipped with each
model since) run model code that imports ``ScorerPyfunc`` from here or from
``registry.client``; both names stay importable so those versions keep loading.
"""

from core.scoring.pyfunc import (
    MODEL_CODE,
    SCORER_ARTIFACT,
    SCORER_FILE,
    ScorerPyfunc,
)

__all__ = ["MODEL_CODE", "SCORER_ARTIFACT", "SCORER_FILE", "ScorerPyfunc"]
