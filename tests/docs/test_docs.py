"""The README tells the truth about configuration."""

from __future__ import annotations

import importlib
import importlib.util
import re

import pytest

from core.settings import Settings
from tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`NBO_{name.upper()}`" in README or f"NBO_{name.upper()}`" in README


def test_quick_start_is_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start


DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FOLDERS = ("core", "features", "training", "registry", "service", "cli", "loadtests", "tests")
PACKAGE = "|".join(FOLDERS)


def _quoted(pattern: str) -> list[tuple[str, str]]:
    return [
        (doc.name, match)
        for doc in DOCS
        for match in re.findall(pattern, doc.read_text(encoding="utf-8"))
    ]


def test_every_file_the_docs_name_exists() -> None:
    named = _quoted(rf"`((?:{PACKAGE}|deploy|docs)/[\w./-]*\.(?:py|md|yml|yaml|toml))`")
    assert named, "the pattern should find the docs' file references"
    missing = [f"{doc}: {path}" for doc, path in named if not (REPO_ROOT / path).exists()]
    assert not missing, missing


def test_every_module_the_docs_name_imports() -> None:
    named = _quoted(rf"`((?:{PACKAGE})(?:\.[a-z_]\w*)+)`")
    assert named, "the pattern should find the docs' module references"
    missing = []
    for doc, dotted in named:
        parts = dotted.split(".")
        # the longest prefix that is a module; what follows it must be an attribute
        for i in range(len(parts), 0, -1):
            if importlib.util.find_spec(".".join(parts[:i])) is not None:
                module = importlib.import_module(".".join(parts[:i]))
                target: object = module
                try:
                    for attribute in parts[i:]:
                        target = getattr(target, attribute)
                except AttributeError:
                    missing.append(f"{doc}: {dotted}")
                break
        else:
            missing.append(f"{doc}: {dotted}")
    assert not missing, missing
