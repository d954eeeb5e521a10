"""What the service serves with, as one immutable snapshot swapped by reference.

A request takes ``holder.current`` once and uses that snapshot throughout, so it never
mixes, say, the models of one moment with the feature set of the next. Writers (the
feature-pointer refresher, the model watcher) build a new snapshot and swap it in;
rebinding one attribute is atomic in CPython, so readers need no lock. Writers take a lock
so that two read-modify-write updates cannot lose each other's change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import cast

from core.catalogue import Catalogue
from core.decisioning import DecisioningConfig
from core.precomputed import ModelRef, ScoreSetInfo
from core.scoring.base import ChurnScorer
from core.scoring.maturity import MaturityScorer
from core.scoring.response import ResponseScorer
from features.online_store import FeatureSetInfo
from registry.client import LoadedModel

MODEL_SLOTS = ("recommender", "churn", "challenger", "maturity", "response")


@dataclass(frozen=True)
class ServingState:
    """Models, catalogue and live feature set in force at one moment.

    ``challenger`` is the recommender behind the ``challenger`` alias (served to a share
    of customers or scored in shadow, ``service.decision.variant``); ``maturity`` is the
    optional maturity outflow model (``core.scoring.maturity``); ``response`` the optional
    offer-response model (``core.scoring.response``); ``model_sources`` says per loaded
    slot (``recommender``, ``churn``, ``challenger``, ``maturity``, ``response``) whether it
    came from the registry or the last-known-good cache.
    """

    catalogue: Catalogue
    decisioning: DecisioningConfig  # validated at startup: a broken file stops the service
    recommender: LoadedModel | None = None
    churn: LoadedModel | None = None
    feature_set: FeatureSetInfo | None = None
    challenger: LoadedModel | None = None
    maturity: LoadedModel | None = None
    response: LoadedModel | None = None
    model_sources: dict[str, str] = field(default_factory=dict)
    # The published precomputed score set (``core.precomputed``); used for a request only
    # when it matches the feature set and models above (:attr:`precomputed`).
    score_set: ScoreSetInfo | None = None

    # The kinds were checked when the models were loaded (``service.infra.model_loading``).
    @property
    def churn_scorer(self) -> ChurnScorer | None:
        return cast(ChurnScorer, self.churn.scorer) if self.churn else None

    @property
    def maturity_scorer(self) -> MaturityScorer | None:
        """The maturity outflow model, or None when none is loaded (it is optional)."""
        return cast(MaturityScorer, self.maturity.scorer) if self.maturity else None

    @property
    def response_scorer(self) -> ResponseScorer | None:
        """The offer-response model, or None when none is loaded (it is optional)."""
        return cast(ResponseScorer, self.response.scorer) if self.response else None

    @property
    def model_versions(self) -> dict[str, str]:
        """Registered model name -> version of every loaded model."""
        models = (self.recommender, self.churn, self.maturity, self.response)
        loaded = (m for m in models if m is not None)
        return {m.name: str(m.version) for m in loaded}

    @cached_property
    def precomputed(self) -> ScoreSetInfo | None:
        """The score set when it was made from this feature set, this recommender and this
        churn model (versions), else None: those requests are scored online."""
        scores = self.score_set
        if scores is None or self.recommender is None or self.feature_set is None:
            return None
        if scores.matches(
            self.feature_set.version,
            ModelRef(self.recommender.name, self.recommender.version),
            ModelRef(self.churn.name, self.churn.version) if self.churn is not None else None,
        ):
            return scores
        return None

    def with_score_set(self, score_set: ScoreSetInfo | None) -> ServingState:
        return replace(self, score_set=score_set)

    def with_feature_set(self, feature_set: FeatureSetInfo | None) -> ServingState:
        return replace(self, feature_set=feature_set)

    def with_model(self, slot: str, model: LoadedModel | None, source: str | None) -> ServingState:
        """A copy with ``slot`` (one of :data:`MODEL_SLOTS`) replaced."""
        if slot not in MODEL_SLOTS:
            raise ValueError(f"unknown model slot {slot!r} (one of {', '.join(MODEL_SLOTS)})")
        sources = {k: v for k, v in self.model_sources.items() if k != slot}
        if model is not None and source is not None:
            sources[slot] = source
        changes: dict[str, object] = {slot: model, "model_sources": sources}
        return replace(self, **changes)  # type: ignore[arg-type]


class StateHolder:
    """The current :class:`ServingState`; see the module docstring for the concurrency rule."""

    def __init__(self, initial: ServingState) -> None:
        self._current = initial
        self._write_lock = threading.Lock()

    @property
    def current(self) -> ServingState:
        return self._current

    def update(self, change: Callable[[ServingState], ServingState]) -> ServingState:
        """Swap in ``change(current)``; return the new snapshot."""
        with self._write_lock:
            self._current = change(self._current)
            return self._current
