"""Lazy imports: keep ``import kiln`` cheap and give clear errors for optional packages."""

from __future__ import annotations

import importlib
import types
from typing import Any

__all__ = ["LazyModule", "lazy_import", "require"]


class LazyModule(types.ModuleType):
    """A module proxy that imports the real module on first attribute access.

    Example::

        >>> np = LazyModule('numpy')   # nothing imported yet
        >>> np.zeros(2).shape          # imports numpy now
        (2,)
    """

    def __init__(self, name: str, hint: str | None = None) -> None:
        super().__init__(name)
        self._lazy_name = name
        self._lazy_hint = hint
        self._lazy_module: types.ModuleType | None = None

    def _load(self) -> types.ModuleType:
        if self._lazy_module is None:
            self._lazy_module = require(self._lazy_name, self._lazy_hint)
        return self._lazy_module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())


def lazy_import(name: str, hint: str | None = None) -> LazyModule:
    """Return a proxy for module ``name`` that is imported when first used."""
    return LazyModule(name, hint)


def require(name: str, hint: str | None = None) -> types.ModuleType:
    """Import ``name`` now, or raise ImportError saying which feature needs it and how to install it.

    Args:
        name: dotted module name, e.g. ``'mlflow'``.
        hint: what needs it, e.g. ``'MLflowWriter'``; added to the message.
    """
    try:
        return importlib.import_module(name)
    except ImportError as e:
        pip_name = name.split(".")[0].replace("_", "-")
        who = f"{hint} needs" if hint else "kiln needs"
        raise ImportError(
            f"{who} the optional package '{name}', which is not installed "
            f"({e}). Install it with `pip install {pip_name}`."
        ) from e
