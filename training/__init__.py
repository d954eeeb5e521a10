"""Offline jobs: point-in-time training examples, model fitting, evaluation, registration.

Reads canonical tables and features (``features/``), builds the scorers that live in
``core/scoring/`` and hands them to ``registry/``. The service never imports this package.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainResult:
    """What a training job produced: the registered version and how it scored."""

    model_name: str
    version: int
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
