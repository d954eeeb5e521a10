"""Last-known-good copies of the serving models on local disk.

Every model the service starts serving (at startup or by a hot reload) is written to
``settings.model_cache_dir`` as the pickled scorer plus a small JSON (name, version, alias,
run id, sha256 of the pickle). When the registry cannot be reached at startup the service
serves these copies and says so (``/readyz`` detail, ``nbo_model_source``) instead of
starting without a model. Only the pickle we downloaded and validated ourselves is ever
written here, so the folder is as trusted as the registry's artifact store.

Writes are atomic (temp file + ``os.replace``): the pickle is written under its own name
first and the JSON, written last, is what makes it current; a reader that finds a JSON
always finds the pickle it names, and checks its hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path

from core.scoring.compat import loads_scorer
from registry.client import LoadedModel

log = logging.getLogger(__name__)


class ModelCacheError(RuntimeError):
    """A cached model is missing, incomplete or does not match its hash."""


def _slot(root: Path, name: str, alias: str) -> Path:
    return root / f"{name}@{alias}.json"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(root: Path, model: LoadedModel) -> Path:
    """Keep ``model`` as the last known good ``name@alias``; returns the JSON path."""
    blob = pickle.dumps(model.scorer, protocol=pickle.HIGHEST_PROTOCOL)
    pickled = root / f"{model.name}@{model.alias}-v{model.version}.pkl"
    _atomic_write(pickled, blob)
    meta = {
        "name": model.name,
        "version": model.version,
        "alias": model.alias,
        "run_id": model.run_id,
        "file": pickled.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    slot = _slot(root, model.name, model.alias)
    _atomic_write(slot, json.dumps(meta, indent=1).encode())
    for old in root.glob(f"{model.name}@{model.alias}-v*.pkl"):
        if old.name != pickled.name:
            old.unlink(missing_ok=True)
    return slot


def load(root: Path, name: str, alias: str) -> LoadedModel:
    """The cached ``name@alias``; :class:`ModelCacheError` if absent or damaged."""
    slot = _slot(root, name, alias)
    try:
        meta = json.loads(slot.read_text())
        blob = (root / meta["file"]).read_bytes()
    except FileNotFoundError as exc:
        raise ModelCacheError(f"no cached copy of {name}@{alias} in {root}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelCacheError(f"cached {name}@{alias} unreadable: {exc}") from exc
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise ModelCacheError(f"cached {name}@{alias}: {meta['file']} does not match its hash")
    try:
        scorer = loads_scorer(blob)
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise ModelCacheError(f"cached {name}@{alias}: cannot unpickle: {exc}") from exc
    return LoadedModel(name, int(meta["version"]), alias, meta.get("run_id"), scorer)
