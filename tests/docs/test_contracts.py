"""docs/CONTRACTS.md tells the truth: every import in the code is one its tables allow.

The tables are parsed from the document itself, so changing a rule means changing the
document, and a rule the code breaks fails here with the importing file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
CONTRACTS = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
PACKAGES = ("core", "features", "training", "registry", "service", "cli", "loadtests")


def _table(heading_row: str) -> list[list[str]]:
    """The rows (cells) of the markdown table whose header row starts with ``heading_row``."""
    lines = CONTRACTS.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_row))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([A-Za-z_][\w.]*)`", cell))


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Absolute imports of one module: (dotted module name, line)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # ``from service.api import schemas``
                yield f"{node.module}.{alias.name}", node.lineno


def _allows(allowed: set[str], module: str) -> bool:
    """``module`` is one of ``allowed`` or inside one; a package named together with some of
    its submodules (``service`` and ``service.app``) allows only those submodules."""
    top = module.split(".")[0]
    narrowed = {a for a in allowed if a.startswith(top + ".")}
    if narrowed:
        return any(module == a or module.startswith(a + ".") for a in narrowed)
    return any(module == a or module.startswith(a + ".") for a in allowed)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


PACKAGE_RULES = {row[0].strip("`"): row for row in _table("| package | may import")}


def test_the_package_table_names_every_package() -> None:
    assert set(PACKAGES) | {"tests"} == set(PACKAGE_RULES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_its_row_allows(package: str) -> None:
    _, may, never = PACKAGE_RULES[package]
    allowed, forbidden = _names(may), _names(never)
    broken = []
    for path in _modules(package):
        for module, line in _imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: {module}"
            if (
                top in forbidden
                or module in forbidden
                or (top in PACKAGES and top != package and not _allows(allowed, module))
            ):
                broken.append(where)
    assert not broken, f"imports docs/CONTRACTS.md does not allow for {package}: {broken}"


def test_tests_share_code_only_through_the_support_package() -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for module, line in _imports(path)
        if module.startswith("tests.") and not module.startswith("tests.support")
    ]
    assert not broken, f"a test module imports another test module: {broken}"


LAYER_RULES = {
    row[0].split("`")[1]: _names(row[1]) for row in _table("| module | may import from `service`")
}


def _layer_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts  # ("service", "api", "auth")
    return ".".join(parts[:2])


def test_the_layer_table_covers_every_module_of_the_service() -> None:
    layers = {_layer_of(p) for p in _modules("service") if p.name != "__init__.py"}
    assert layers == set(LAYER_RULES)


def test_each_service_layer_imports_only_what_its_row_allows() -> None:
    broken = []
    for path in _modules("service"):
        layer = _layer_of(path)
        for module, line in _imports(path):
            if not module.startswith("service.") or module.startswith(layer):
                continue
            target_layer = ".".join(module.split(".")[:2])
            if target_layer == layer:
                continue
            if not _allows(LAYER_RULES.get(layer, set()), module):
                broken.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert not broken, f"service layer imports docs/CONTRACTS.md does not allow: {broken}"


def test_the_checks_catch_a_broken_rule() -> None:
    """The helpers the checks rest on refuse what they must refuse."""
    assert not _allows({"core", "service", "service.app"}, "service.api.routes")
    assert _allows({"core", "service", "service.app"}, "service.app")
    assert not _allows({"core"}, "training.churn")
    assert _allows({"service.infra"}, "service.infra.metrics")
