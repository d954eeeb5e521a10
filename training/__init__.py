"""Offline jobs: point-in-time training examples, model fitting, evaluation, registration.

Reads canonical tables and features (``features/``), builds the scorers that live in
``core/scoring/`` and hands them to ``registry/``. The service never imports this package.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class _Version(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...


@dataclass(frozen=True)
class TrainResult:
    """What a training job produced: the registered version (None when the job only
    logged its model: ``--no-register``) and how it scored."""

    model_name: str
    version: int | None
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def registered_version(self) -> int:
        """The version this job registered; ``ValueError`` for a job that only logged."""
        if self.version is None:
            raise ValueError(f"{self.model_name}: the job registered no version (a trial)")
        return self.version

    @classmethod
    def registered(
        cls,
        version: _Version | None,
        run_id: str,
        metrics: dict[str, float],
        params: Mapping[str, object],
        started: float,
        model_name: str = "",
    ) -> "TrainResult":
        """The result of a job that registered ``version`` (None: a trial that only logged
        its model for ``model_name``); ``started`` is its ``time.perf_counter()`` at the
        start, params are shown as text."""
        return cls(
            model_name=version.name if version is not None else model_name,
            version=int(version.version) if version is not None else None,
            run_id=run_id,
            metrics=metrics,
            params={k: str(v) for k, v in params.items()},
            seconds=time.perf_counter() - started,
        )
