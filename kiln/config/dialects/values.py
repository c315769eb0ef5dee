"""Typed reads of config values, for translators and builders: a wrongly typed value (``two`` for a
batch size, ``1.5`` for an iteration count, a string where a ``dict(type=...)`` belongs) is refused
naming the key as the user wrote it, instead of failing later inside code the user never called."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["as_int", "as_number", "as_mapping", "as_mapping_list"]


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_int(value: Any, key: str, minimum: int | None = None) -> int:
    """``value`` as an int; an integral float (``12.0``) is accepted, ``1.5``, ``'two'`` and bools are not."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{key} must be an integer{bound}, got {_shown(value)}; e.g. {key}="
                         f"{max(minimum or 0, 1)}.")
    return int(value)


def as_number(value: Any, key: str, minimum: float | None = None) -> float | int:
    """``value`` as a real number (int or float, not bool or string)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or (
            minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{key} must be a number{bound}, got {_shown(value)}.")
    return value


def as_mapping(value: Any, key: str, example: str = "dict(type=...)") -> Mapping[str, Any]:
    """``value`` as a mapping; a string that spells a dict is named as such (a command-line override
    ``key=dict(...)`` that was not parsed, or a quoted dict in a yaml file)."""
    if isinstance(value, Mapping):
        return value
    hint = ""
    if isinstance(value, str) and value.strip().startswith(("dict(", "{")):
        hint = " (a string that spells a dict: write it unquoted in the config file)"
    raise TypeError(f"{key} must be a dict such as {example}, got {_shown(value)}{hint}.")


def as_mapping_list(value: Any, key: str, example: str = "[dict(type=...)]") -> list[Mapping[str, Any]]:
    """``value`` as a list of mappings, each checked with :func:`as_mapping` (``key[i]`` in errors)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{key} must be a list such as {example}, got {_shown(value)}.")
    return [as_mapping(v, f"{key}[{i}]") for i, v in enumerate(value)]
