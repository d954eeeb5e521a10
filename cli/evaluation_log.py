"""``--log`` of the ``nbo evaluate`` commands: the option and the call that records a run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import exit_on

if TYPE_CHECKING:
    from core.settings import Settings
    from training.evaluation_log import Evaluated

LogRun = Annotated[
    bool,
    typer.Option(
        "--log", help="Record the evaluation as an MLflow run (experiment nbo-evaluations)."
    ),
]


def record(
    settings: Settings,
    kind: str,
    data: Path,
    metrics: Mapping[str, Any],
    evaluated: Evaluated,
    how: str,
    params: Mapping[str, object] | None = None,
) -> None:
    """``training.evaluation_log.log_evaluation``, then say which run it made (stderr). A
    tracking store that cannot be reached or written exits with code 2 and its message."""
    from mlflow.exceptions import MlflowException

    from registry.client import RegistryError
    from training.evaluation_log import EVALUATION_EXPERIMENT, log_evaluation

    with exit_on(MlflowException, RegistryError, OSError):
        run = log_evaluation(settings, kind, data, metrics, evaluated, how, params)
    typer.echo(f"logged      run {run} (experiment {EVALUATION_EXPERIMENT})", err=True)
