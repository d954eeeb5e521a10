"""Unpickling registered scorers whose classes have since moved to other modules.

A model version's artifact is a pickled scorer, and a pickle names each class by module
and name. Versions registered while the recommender runtime lived in one module
(``core.scoring.recommender``, with the packed nodes in ``core.scoring.packed_trees``) name
those paths; :data:`MOVED` maps each of them to where the class lives now, so every version
keeps loading. New pickles name the new paths by themselves. Everything that unpickles a
scorer (``Registry.load_version``, the pyfunc wrapper, the service's last-known-good cache)
goes through :func:`load_scorer` / :func:`loads_scorer`.

Like ``pickle``, this runs code named by the artifact: the artifact store must be as
trusted as the code base.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

MOVED: dict[tuple[str, str], str] = {
    # Reachable from a registered scorer (the pickled state of each, ``__getstate__``):
    ("core.scoring.recommender", "BoostedRecommender"): "core.scoring.boosted",
    ("core.scoring.recommender", "TreeEnsemble"): "core.scoring.trees",
    ("core.scoring.recommender", "TwoStageRecommender"): "core.scoring.legacy",
    # Derived when a scorer is built or unpickled, never in its state; mapped all the same
    # so any other pickle of them (a notebook's, a cache's) loads too:
    ("core.scoring.recommender", "FlatTrees"): "core.scoring.trees",
    ("core.scoring.packed_trees", "PackedTrees"): "core.scoring.tree_kernels",
}
"""Old ``(module, class name)`` -> the module the class lives in now (same name)."""


class ScorerUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves the old class paths of :data:`MOVED`."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED.get((module, name), module), name)


def load_scorer(file: IO[bytes]) -> Any:
    """``pickle.load`` of a scorer, old class paths resolved (:data:`MOVED`)."""
    return ScorerUnpickler(file).load()


def loads_scorer(data: bytes) -> Any:
    """``pickle.loads`` of a scorer, old class paths resolved (:data:`MOVED`)."""
    return load_scorer(io.BytesIO(data))
