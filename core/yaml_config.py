"""Reading a YAML configuration file into a pydantic model, with errors naming the key.

Why one helper: every configuration file of the project (the catalogue, the moments
rules) is read the same way, and a bad file must fail the same way: the file, then the
line and column of a YAML syntax error, or the dotted path of the bad key and the rule it
breaks, e.g. ``moments.yaml: tiers.private_from: Input should be greater than 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

Describe = Callable[[object, tuple[int | str, ...]], str]
"""Turns a pydantic error location into the text naming the key (default: dotted path)."""


def dotted(raw: object, loc: tuple[int | str, ...]) -> str:
    """``("tiers", "private_from")`` -> ``tiers.private_from``; the root is ``<root>``."""
    return ".".join(map(str, loc)) or "<root>"


def read_yaml_mapping(
    path: Path, error: type[ValueError], what: str, expected: str = "a mapping"
) -> dict[str, Any]:
    """The top-level mapping of a YAML file; raise ``error`` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}{where}: invalid YAML: {problem}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: expected {expected}")
    return raw


def validate_mapping(
    raw: dict[str, Any],
    model: type[Model],
    path: Path,
    error: type[ValueError],
    describe: Describe = dotted,
) -> Model:
    """``model`` validated from ``raw``; one line per problem, each naming file and key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: {describe(raw, tuple(err['loc']))}: {err['msg']}" for err in exc.errors()
        ]
        raise error("\n".join(lines)) from exc


def load_yaml_model(
    path: Path | str,
    model: type[Model],
    error: type[ValueError],
    what: str,
    *,
    expected: str = "a mapping",
    describe: Describe = dotted,
) -> Model:
    """Read ``path`` and validate it as ``model``; raise ``error`` naming what is wrong."""
    path = Path(path)
    raw = read_yaml_mapping(path, error, what, expected)
    return validate_mapping(raw, model, path, error, describe)
