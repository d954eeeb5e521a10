"""``ResponseModel.accept_probabilities``: the lean batch path gives ``predict_proba``'s
numbers for both fitted candidates of ``training.response``, and anything else falls back
to ``predict_proba``."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.scoring.response import calibrated_average
from features.response_features import contact_features
from tests.support.records import adult
from tests.support.response_models import fatigue_model
from training.response import ALGORITHMS, ResponseData, fit_response


def contacts(count: int, seed: int = 3) -> ResponseData:
    """Hand-made contacts: acceptance falls with the showings, rises after a success."""
    rng = random.Random(seed)
    when = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
    base = contact_features(adult(), "credit_card", "app", [], when)
    rows: list[Any] = []
    target = []
    for _ in range(count):
        shown = rng.randint(1, 8)
        outcome = rng.choice(["nonexistent", "failure", "success"])
        row = {
            **base,
            "age": float(rng.randint(20, 80)),
            "times_shown": float(shown),
            "previous_outcome": outcome,
            "channel": rng.choice(["app", "push", "cellular"]),
        }
        chance = 0.5 / shown + (0.3 if outcome == "success" else 0.0)
        rows.append(row)
        target.append(1 if rng.random() < chance else 0)
    return ResponseData(rows, np.array(target), Path("contacts.csv"), "hand-made")


@pytest.fixture(scope="module")
def data() -> ResponseData:
    return contacts(300)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_lean_path_gives_predict_probas_numbers(data: ResponseData, algorithm: str) -> None:
    model = fit_response(data, algorithm, seed=1)
    probe = contacts(40, seed=9).features
    matrix = model.design.matrix(probe)
    lean = calibrated_average(model.estimator, matrix)
    assert lean is not None  # both candidates take the lean path
    expected = model.estimator.predict_proba(matrix)[:, 1]
    np.testing.assert_allclose(lean, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.accept_probabilities(probe), expected, rtol=0, atol=1e-12)
    assert len(set(np.round(expected, 9))) > 3  # the probe spans several values


def test_another_estimator_falls_back_to_predict_proba() -> None:
    model = fatigue_model()  # a plain pipeline, not a calibrated ensemble
    rows = [contact_features(adult(), "funds", "app", [], 1.8e9)]
    assert calibrated_average(model.estimator, model.design.matrix(rows)) is None
    expected = model.estimator.predict_proba(model.design.matrix(rows))[:, 1]
    assert model.accept_probabilities(rows).tolist() == expected.tolist()
