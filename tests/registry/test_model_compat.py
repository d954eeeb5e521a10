"""Registered models survive the move of their classes: pickles that name the old class paths
(``core.scoring.recommender.*``) load through ``core.scoring.compat`` into the classes of today,
with the same scores and reasons, from a file, from a real MLflow registry and from the
service's last-known-good cache."""

from __future__ import annotations

import importlib
import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.scoring.boosted import BoostedRecommender
from core.scoring.compat import MOVED, loads_scorer
from core.scoring.design import TabularDesign
from core.scoring.legacy import TwoStageRecommender
from core.scoring.trees import FlatTrees, TreeEnsemble
from core.settings import Settings
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from registry.client import SCORER_FILE, LoadedModel, Registry
from service.app import create_app
from service.infra import model_cache
from tests.support.auth import AUTH
from tests.support.records import publish_records
from tests.support.served import ask
from training.labels import snapshot_months

END_MONTH = date(2025, 12, 31)
OLD = "core.scoring.recommender"
NEW_MODULES = (b"core.scoring.boosted", b"core.scoring.trees", b"core.scoring.legacy")


@contextmanager
def old_class_paths() -> Iterator[None]:
    """Inside, the classes that lived in ``core.scoring.recommender`` pickle as that module's,
    exactly as versions registered under the old paths were written: their ``__module__``
    names it and a module registered under that name holds them (pickle checks that the
    name resolves to the same class). Everything is restored on the way out."""
    moved = [BoostedRecommender, TreeEnsemble, TwoStageRecommender, FlatTrees]
    module = types.ModuleType(OLD)
    for cls in moved:
        setattr(module, cls.__name__, cls)
    saved = [(cls, cls.__module__) for cls in moved]
    previous = sys.modules.get(OLD)
    sys.modules[OLD] = module
    try:
        for cls in moved:
            cls.__module__ = OLD
        yield
    finally:
        for cls, name in saved:
            cls.__module__ = name
        if previous is None:
            sys.modules.pop(OLD, None)
        else:
            sys.modules[OLD] = previous


def old_pickle(scorer: object) -> bytes:
    with old_class_paths():
        data = pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL)
    assert OLD.encode() in data
    assert not any(new in data for new in NEW_MODULES)
    with pytest.raises(ModuleNotFoundError, match=OLD):
        pickle.loads(data)  # the old path is gone: plain pickle cannot load it
    return data


@pytest.fixture(scope="module")
def boosted(quick_recommender: BoostedRecommender) -> BoostedRecommender:
    """The run's quickly fitted recommender (``tests/conftest.py``)."""
    return quick_recommender


@pytest.fixture(scope="module")
def records(catalogue: Catalogue) -> list[dict[str, Any]]:
    bank = generate_bank(customers=200, months=6, seed=9, catalogue=catalogue, end_month=END_MONTH)
    frame = compute_features(bank, snapshot_months(bank)[-1].date(), catalogue)
    return [*(dict(record) for _, record in to_records(frame)), {}]


def legacy_model() -> TwoStageRecommender:
    """A hand-built two-stage model: holding ``a`` points at ``c``, ``age`` pushes ``b``."""
    design = TabularDesign.fit(pd.DataFrame({"age": [20.0, 40.0, 60.0]}), ["age"], {})
    projection = np.zeros((3, 3))
    projection[2, 0] = 1.0
    return TwoStageRecommender(
        product_ids=["a", "b", "c"],
        popularity=np.array([0.02, 0.03, 0.01]),
        projection=projection,
        customer_design=design,
        interaction_weights=np.array([[0.0], [1.0], [0.0]]),
        pair_mean=np.zeros(3),
        pair_scale=np.ones(3),
        pair_weights=np.array([1.5, 2.0, 0.5]),
        intercept=-3.0,
    )


LEGACY_RECORDS: list[dict[str, Any]] = [
    {"age": 40},
    {"age": 40, "dropped__b": 1},
    {"age": 30, "held__a": 1},
    {"age": 60},
    {},
]


def assert_same_answers(got: Any, want: Any, records: list[dict[str, Any]]) -> None:
    """Bit-identical scores and equal reasons of the three best products, per record."""
    for record in records:
        prepared = got.prepare(record)
        np.testing.assert_array_equal(prepared.scores, want.score(record))
        top = [int(j) for j in np.argsort(-prepared.scores)[:3]]
        assert prepared.reasons(top) == want.prepare(record).reasons(top)


def test_the_map_names_classes_that_exist_where_it_says() -> None:
    for (old_module, name), new_module in MOVED.items():
        assert old_module in (OLD, "core.scoring.packed_trees")
        cls = getattr(importlib.import_module(new_module), name)
        assert cls.__module__ == new_module and cls.__name__ == name


def test_an_old_boosted_pickle_loads_into_the_new_classes(
    boosted: BoostedRecommender, records: list[dict[str, Any]]
) -> None:
    loaded = loads_scorer(old_pickle(boosted))
    assert type(loaded) is BoostedRecommender
    assert type(loaded.trees) is TreeEnsemble and type(loaded.pair_trees) is TreeEnsemble
    assert_same_answers(loaded, boosted, records)


def test_an_old_legacy_pickle_loads_into_the_new_class() -> None:
    model = legacy_model()
    loaded = loads_scorer(old_pickle(model))
    assert type(loaded) is TwoStageRecommender
    assert_same_answers(loaded, model, LEGACY_RECORDS)
    for record in LEGACY_RECORDS:
        assert [loaded.reasons(record, j) for j in range(3)] == [
            model.reasons(record, j) for j in range(3)
        ]


def test_new_pickles_name_the_new_modules(boosted: BoostedRecommender) -> None:
    data = pickle.dumps(boosted, protocol=pickle.HIGHEST_PROTOCOL)
    assert OLD.encode() not in data
    assert b"core.scoring.boosted" in data and b"core.scoring.trees" in data
    assert type(pickle.loads(data)) is BoostedRecommender


OLD_MODEL_CODE = (
    "from mlflow.models import set_model\n"
    "from registry.client import ScorerPyfunc\n\n"
    "set_model(ScorerPyfunc())\n"
)
"""The pyfunc's model code of versions registered while the wrapper lived in registry.client."""


def test_a_version_registered_with_old_class_paths_loads_from_mlflow(
    settings: Settings,
    tmp_path: Path,
    boosted: BoostedRecommender,
    records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(settings)
    name = "nbo-recommender-old"
    monkeypatch.setattr("registry.logged_model.MODEL_CODE", OLD_MODEL_CODE)
    with old_class_paths():  # what the registry logged under the old paths
        info = registry.log_and_register(boosted, name, tags={"nbo.kind": "recommender"})
    monkeypatch.undo()
    assert info.source is not None
    model_dir = Path(info.source.removeprefix("file://"))
    assert any(
        "from registry.client import ScorerPyfunc" in f.read_text() for f in model_dir.rglob("*.py")
    ), "the version's model code should be the old one"
    uri = registry.client.get_model_version_download_uri(name, str(info.version))
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{uri.rstrip('/')}/artifacts/{SCORER_FILE}",
        dst_path=str(tmp_path),
        tracking_uri=settings.tracking_uri,
    )
    stored = Path(local).read_bytes()
    assert OLD.encode() in stored and not any(new in stored for new in NEW_MODULES)

    registry.promote(name, info.version)
    loaded = registry.load(name, "champion")
    assert type(loaded.scorer) is BoostedRecommender
    assert_same_answers(loaded.scorer, boosted, records)

    # The pyfunc wrapper (a notebook's way in) runs the old model code and unpickles the
    # same artifact.
    pyfunc = mlflow.pyfunc.load_model(info.source)
    rows = pd.DataFrame([{k: r.get(k) for k in boosted.feature_names} for r in records[:20]])
    expected = np.vstack(
        [boosted.score({str(k): v for k, v in r.items()}) for r in rows.to_dict("records")]
    )
    np.testing.assert_array_equal(pyfunc.predict(rows).to_numpy(), expected)


def test_a_last_known_good_copy_with_old_class_paths_loads(
    tmp_path: Path, boosted: BoostedRecommender, records: list[dict[str, Any]]
) -> None:
    with old_class_paths():  # a cache the service wrote under the old paths
        model_cache.save(tmp_path, LoadedModel("nbo-recommender", 7, "champion", "r", boosted))
    (cached,) = tmp_path.glob("*.pkl")
    assert OLD.encode() in cached.read_bytes()
    back = model_cache.load(tmp_path, "nbo-recommender", "champion")
    assert type(back.scorer) is BoostedRecommender and back.version == 7
    assert_same_answers(back.scorer, boosted, records[:50])


def test_a_version_registered_with_old_class_paths_serves(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue, boosted: BoostedRecommender
) -> None:
    """The service started on a registry whose champion was pickled under the old class
    paths answers personal recommendations with that model's own scores."""
    bank = generate_bank(customers=200, months=6, seed=9, catalogue=catalogue, end_month=END_MONTH)
    as_of = snapshot_months(bank)[-1].date()
    frame = compute_features(bank, as_of, catalogue)
    customers = {cid: dict(record) for cid, record in to_records(frame)}
    publish_records(
        settings, redis_client, catalogue, customers, as_of=as_of, feature_names=frame.columns
    )
    registry = Registry(settings)
    name = settings.recommender_model_name
    with old_class_paths():
        info = registry.log_and_register(boosted, name, tags={"nbo.kind": "recommender"})
    registry.promote(name, info.version)

    customer_id, record = next(iter(customers.items()))
    with TestClient(create_app(settings), headers=AUTH) as client:
        body = ask(client, customer_id, k=3)
    assert not body["degraded"], body["degraded_reason"]
    assert body["model_versions"][name] == str(info.version)
    assert body["offers"], "a personal answer for a customer of the feature set"
    scores = dict(zip(boosted.product_ids, boosted.score(record), strict=True))
    for offer in body["offers"]:
        if offer["product_id"] in scores:  # retention treatments carry no model score
            assert offer["score"] == pytest.approx(scores[offer["product_id"]])
