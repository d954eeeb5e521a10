"""When a test may skip for want of something on the machine, and when it must fail.

A skip reads as "not applicable here"; one that hides a breakage (a cluster client that
cannot start, a named PostgreSQL that refuses) would pass a broken build.
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

import tests.support.browser as browser
import tests.support.postgres as postgres
import tests.support.redis_cluster as redis_cluster
from tests.support.paths import REPO_ROOT
from tests.support.shared_data import SHARED_DATA_ENV, shared_data_dir


def test_shared_data_honours_the_environment(tmp_path: Path) -> None:
    assert shared_data_dir({SHARED_DATA_ENV: str(tmp_path)}) == tmp_path
    assert shared_data_dir({}) == REPO_ROOT.parent / "shared" / "data"


def test_no_test_builds_the_shared_data_path_itself() -> None:
    """Only ``tests/support/shared_data.py`` spells the default folder: every data test
    goes through it (or the ``shared_data`` fixture), so ``NBO_SHARED_DATA`` holds for all."""
    offenders = []
    for path in (REPO_ROOT / "tests").rglob("*.py"):
        if path.name == "shared_data.py" or path == Path(__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and (text == "shared" or text.startswith("../shared")):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_cluster_skips_only_without_a_redis_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_cluster, "redis_server_binary", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="no redis-server binary"):
        redis_cluster.cluster_or_skip(tmp_path)


def test_a_cluster_that_fails_to_start_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binary that is there but broken raises - whatever it raises, it is not a skip."""
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(redis_cluster, "redis_server_binary", lambda: str(broken))
    with pytest.raises(Exception) as raised:
        redis_cluster.cluster_or_skip(tmp_path / "cluster")
    assert not isinstance(raised.value, pytest.skip.Exception)


def test_postgres_named_by_the_environment_is_used_even_if_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "listening", lambda host, port: False)
    url = "postgresql://postgres@127.0.0.1:1/test"
    assert postgres.postgres_url({postgres.POSTGRES_URL_ENV: url}) == url


def test_postgres_skips_only_when_unset_and_nothing_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        monkeypatch.setattr(postgres, "DEFAULT_PORT", listener.getsockname()[1])
        assert postgres.postgres_url({}) == postgres.DEFAULT_POSTGRES_URL
    with pytest.raises(pytest.skip.Exception, match="unset and nothing listens"):
        postgres.postgres_url({})


def test_the_browser_tests_find_chromium_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "chromium"
    binary.write_text("#!/bin/sh\n")
    assert browser.chromium_binary({browser.CHROMIUM_ENV: str(binary)}) == str(binary)


def test_the_browser_tests_skip_only_without_a_chromium_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "DEBIAN_CHROMIUM", str(tmp_path / "absent"))
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    assert browser.chromium_binary({browser.CHROMIUM_ENV: str(tmp_path / "nothing")}) is None
    assert "no Chromium binary" in browser.MISSING
