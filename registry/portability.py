"""The full portability check of a model version: a fresh virtual environment with only the
requirements the version declares, then ``mlflow.pyfunc.load_model`` and ``predict`` on its
own input example there, outside this project.

Slow (it installs MLflow and its dependencies from the package index), so it is a command,
not a test: the suite checks the same packaging without installing anything
(``tests/registry/test_model_package.py``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import mlflow

from core.settings import Settings
from registry.client import Registry

CHECK = """
import json, sys
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
example = json.load(open(sys.argv[1] + "/input_example.json"))
print(model.predict([example]).to_json(orient="records"))
"""


def download(settings: Settings, name: str, version: int, into: Path) -> Path:
    """The version's model folder (MLmodel, code, requirements, artifacts) under ``into``."""
    info = Registry(settings).version(name, version)
    if info.source is None:
        raise ValueError(f"{name} version {version} has no model source")
    return Path(
        mlflow.artifacts.download_artifacts(
            info.source, dst_path=str(into), tracking_uri=settings.tracking_uri
        )
    )


def check(model_dir: Path, work: Path, echo: bool = True) -> str:
    """Install the folder's ``requirements.txt`` into a new venv under ``work``, load the
    model there (from ``work``, so the project is not on the path) and score its example.
    Returns the prediction as JSON; raises ``RuntimeError`` with pip's or Python's error."""
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    steps = [
        [str(python), "-m", "pip", "install", "-q", "-r", str(model_dir / "requirements.txt")],
        [str(python), "-I", "-c", CHECK, str(model_dir)],
    ]
    out = ""
    for step in steps:
        if echo:
            print("$", " ".join(step[:3]), "...", file=sys.stderr)
        done = subprocess.run(step, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-4000:])
        out = done.stdout.strip()
    return out


def check_version(settings: Settings, name: str, version: int) -> str:
    """:func:`check` of a registered version (downloaded to a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="nbo-portable-") as tmp:
        return check(download(settings, name, version, Path(tmp)), Path(tmp))
