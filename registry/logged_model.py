"""The logged model of a run: the pyfunc folder MLflow stores, and what links it to its
run's metrics and data and to the version it becomes (``registry.client`` drives these)."""

from __future__ import annotations

import json
import pickle
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import LoggedModel, LoggedModelOutput, Metric, Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from registry import lineage, model_package
from registry.metric_groups import grouped
from registry.pyfunc import MODEL_CODE, SCORER_ARTIFACT, SCORER_FILE

MODEL_ARTIFACT = "model"


def log_pyfunc(
    client: MlflowClient,
    experiment_id: str,
    scorer: Any,
    run: Run,
    name: str,
    example: Mapping[Any, Any] | None,
) -> LoggedModel:
    """The client-side equivalent of ``mlflow.pyfunc.log_model(name=...)``.

    ``log_model`` resolves the process-global tracking URI; the same steps on our bound
    client are: create the LoggedModel, save the pyfunc folder, upload, link to the run.
    The logged model carries its run's lineage tags (who, which command, which commit).
    """
    run_id = run.info.run_id
    lineage_tags = {k: v for k, v in run.data.tags.items() if k in lineage.SOURCE_TAGS}
    logged = client.create_logged_model(
        experiment_id,
        name=MODEL_ARTIFACT,
        source_run_id=run_id,
        tags={**lineage_tags, "nbo.model_name": name, "nbo.kind": scorer.kind},
        model_type=scorer.kind,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="nbo-model-") as tmp:
            pickled = Path(tmp) / SCORER_FILE
            data = pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL)
            pickled.write_bytes(data)
            code = Path(tmp) / "scorer_model.py"
            code.write_text(MODEL_CODE)
            local = Path(tmp) / MODEL_ARTIFACT
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=str(code),
                artifacts={SCORER_ARTIFACT: str(pickled)},
                code_paths=model_package.write_code(Path(tmp) / "code"),
                signature=model_package.signature(scorer),
                input_example=model_package.input_example(scorer, example),
                pip_requirements=model_package.requirements(data),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location,
                    run_id=run_id,
                    model_id=logged.model_id,
                    model_uuid=logged.model_id,
                ),
            )
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    return client.finalize_logged_model(logged.model_id, "READY")


def link_metrics(
    client: MlflowClient, logged: LoggedModel, run: Run, metrics: Mapping[str, float]
) -> None:
    """Log the quality metrics once more, attached to the logged model and to the data
    they were measured on (the run's holdout or evaluation dataset input): the logged
    model's page then shows its metrics and "Datasets used"."""
    measured_on = None
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = {t.key: t.value for t in item.tags}.get(lineage.DATASET_CONTEXT)
        if context in ("holdout", "evaluation") or measured_on is None:
            measured_on = item.dataset
    now = int(time.time() * 1000)
    quality = [
        Metric(
            grouped(k),
            float(v),
            now,
            0,
            model_id=logged.model_id,
            dataset_name=measured_on.name if measured_on else None,
            dataset_digest=measured_on.digest if measured_on else None,
        )
        for k, v in metrics.items()
        if grouped(k).startswith("quality/")
    ]
    if quality:
        client.log_batch(run.info.run_id, metrics=quality)


def link_version(client: MlflowClient, logged: LoggedModel, version: ModelVersion) -> None:
    """Tag the logged model with its version, as ``mlflow.register_model`` does: the UI's
    logged-model page then shows it registered (not a "Register model" button that
    would make a duplicate version)."""
    listed = json.loads(logged.tags.get(mlflow_tags.MLFLOW_MODEL_VERSIONS) or "[]")
    listed.append({"name": version.name, "version": int(version.version)})
    client.set_logged_model_tags(
        logged.model_id, {mlflow_tags.MLFLOW_MODEL_VERSIONS: json.dumps(listed)}
    )
