"""``--param NAME=VALUE``: override one field of a job's config dataclass from the CLI."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Config = TypeVar("Config")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _to_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _to_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_str_tuple(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


_CONVERTERS: dict[Any, tuple[str, Callable[[str], Any]]] = {
    bool: ("bool", _to_bool),
    int: ("int", int),
    float: ("float", _to_float),
    str: ("str", str),
    tuple[str, ...]: ("comma-separated list of text", _to_str_tuple),
}


def apply_params(config: Config, assignments: Sequence[str]) -> tuple[Config, dict[str, Any]]:
    """``config`` with the ``NAME=VALUE`` overrides applied, and the overrides by name.

    Each VALUE is converted to the field's declared type (int, float, bool as
    true/false/yes/no/on/off/1/0, ``tuple[str, ...]`` as a comma-separated list, empty for
    ``()``). An unknown or repeated name, a missing ``=`` or a value that does not convert
    raises ``ValueError`` naming the parameter and listing the valid names.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {config!r}")
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config) if f.init]
    valid = "valid: " + ", ".join(names)
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param {assignment!r} is not NAME=VALUE; {valid}")
        if name not in names:
            raise ValueError(f"unknown --param {name!r}; {valid}")
        if name in overrides:
            raise ValueError(f"--param {name!r} given more than once")
        kind, convert = _CONVERTERS.get(hints[name], (str(hints[name]), None))
        if convert is None:
            raise ValueError(f"--param {name!r} has type {kind}, which cannot be set here")
        try:
            overrides[name] = convert(raw)
        except ValueError as exc:
            raise ValueError(
                f"--param {name}={raw!r} is not a valid {kind} ({exc}); {valid}"
            ) from None
    return dataclasses.replace(config, **overrides), overrides  # type: ignore[type-var]
