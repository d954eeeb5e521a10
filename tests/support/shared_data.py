"""Where the public data sets are: ``NBO_SHARED_DATA``, else ``../shared/data`` beside the
repository. The one place tests (and the fixture ``shared_data``) resolve it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

SHARED_DATA_ENV = "NBO_SHARED_DATA"


def shared_data_dir(environ: dict[str, str] | None = None) -> Path:
    """The data folder the environment names (``NBO_SHARED_DATA``), else the default."""
    env = os.environ if environ is None else environ
    named = env.get(SHARED_DATA_ENV)
    return Path(named) if named else REPO_ROOT.parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """``shared_data_dir() / parts``; skips the test naming the missing path and the variable."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} not present (set {SHARED_DATA_ENV})")
    return path


def bank_marketing_sample(folder: Path, every: int) -> Path:
    """Every ``every``-th contact of the Bank Marketing dev file (header kept, lines
    unchanged), written to ``folder``: a CV of the response model in seconds."""
    source = require_shared_data("bank_marketing", "bank_marketing_dev.csv")
    lines = source.read_text().splitlines()
    path = folder / "sample.csv"
    path.write_text("\n".join([lines[0], *lines[1::every]]) + "\n")
    return path
