"""Dataset and metadata catalogs: global name → loader function / metadata tables.

A dataset is registered once by name (``DatasetCatalog.register('my_train', fn)``) with a function
returning a list of dataset dicts, and the dicts are only produced when ``DatasetCatalog.get`` is
called. ``MetadataCatalog.get(name)`` returns a ``Metadata`` object holding facts about the
dataset (``thing_classes``, id mappings, ``evaluator_type``, ``json_file``, ...).
"""

from __future__ import annotations

import difflib
import logging
from collections import UserDict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "add_lazy_registrar"]

# Functions that register datasets on the first access to either catalog (the built-in names of
# kiln.data.builtin): registering then, not at import, keeps `import kiln.data` free of work and
# reads `$DETECTRON2_DATASETS` as the program set it before it first used a dataset name.
_LAZY_REGISTRARS: list[Callable[[], None]] = []
_LAZY_DONE = [False]


def add_lazy_registrar(func: Callable[[], None]) -> None:
    """Run ``func`` (it registers datasets) on the first access to ``DatasetCatalog`` or
    ``MetadataCatalog``; at once if a catalog was already accessed."""
    _LAZY_REGISTRARS.append(func)
    if _LAZY_DONE[0]:
        func()


def _run_lazy_registrars() -> None:
    if _LAZY_DONE[0]:
        return
    _LAZY_DONE[0] = True  # first: the registrars themselves access the catalogs
    for func in list(_LAZY_REGISTRARS):
        func()


class _LazyDict(UserDict):
    """A ``UserDict`` whose contents are completed by the lazy registrars on first access."""

    @property  # type: ignore[override]
    def data(self) -> dict:
        _run_lazy_registrars()
        return self._data

    @data.setter
    def data(self, value: dict) -> None:
        self._data = value


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(known)) if known else "(none)"
    return (
        f"Dataset '{name}' is not registered in the {kind}.{hint} Registered datasets: {listing}. "
        f"Register it with DatasetCatalog.register('{name}', loader_fn) or, for a COCO json, "
        f"kiln.data.datasets.register_coco_instances('{name}', {{}}, json_file, image_root)."
    )


class _DatasetCatalog(_LazyDict):
    """Name → function returning ``list[dict]`` (the standard dataset dicts)."""

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register ``func`` (no arguments, returns dataset dicts) under ``name``."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}'): expected a callable, got {func!r}.")
        # self._data, not self.data: registering must not trigger the lazy built-in names (a name
        # registered before them is kept; the built-in registrar skips it).
        if name in self._data:
            raise KeyError(
                f"Dataset '{name}' is already registered. Use another name, or "
                f"DatasetCatalog.remove('{name}') first."
            )
        self._data[name] = func

    def get(self, name: str) -> list[dict]:  # type: ignore[override]
        """Call the loader registered as ``name`` and return its dataset dicts."""
        try:
            f = self[name]
        except KeyError as exc:
            raise KeyError(_unknown("DatasetCatalog", name, list(self.keys()))) from exc
        dicts = f()
        if not isinstance(dicts, list):
            raise TypeError(
                f"The loader of dataset '{name}' ({getattr(f, '__name__', f)}) returned "
                f"{type(dicts).__name__}; it must return a list of dicts."
            )
        return dicts

    def list(self) -> list[str]:
        """Names of all registered datasets."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Unregister ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.keys())})"

    __repr__ = __str__


class Metadata:
    """Facts about one dataset; attributes are set once (re-setting a different value is an error).

    Example::

        >>> MetadataCatalog.get('my_ds').set(thing_classes=['cat', 'dog'])
        >>> MetadataCatalog.get('my_ds').thing_classes
        ['cat', 'dog']
    """

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        self.__dict__["name"] = name
        self.set(**kwargs)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        keys = sorted(k for k in self.__dict__ if k != "name")
        raise AttributeError(
            f"Metadata of dataset '{self.__dict__.get('name', '')}' has no '{key}'. Available: {keys}. "
            f"Set it with MetadataCatalog.get(name).set({key}=...)."
        )

    def __setattr__(self, key: str, val: Any) -> None:
        if key in self.__dict__ and self.__dict__[key] != val:
            raise AttributeError(
                f"Metadata '{key}' of dataset '{self.name}' is already set to {self.__dict__[key]!r}; "
                f"refusing to change it to {val!r}. Remove the dataset's metadata first "
                f"(MetadataCatalog.remove('{self.name}'))."
            )
        self.__dict__[key] = val

    def as_dict(self) -> dict[str, Any]:
        """A shallow copy of all fields."""
        return dict(self.__dict__)

    def set(self, **kwargs: Any) -> Metadata:
        """Set several fields; returns self."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Field ``key`` or ``default``."""
        return self.__dict__.get(key, default)

    def __repr__(self) -> str:
        return f"Metadata({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class _MetadataCatalog(_LazyDict):
    """Name → ``Metadata``; ``get`` creates an empty entry on first access."""

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """The ``Metadata`` of ``name`` (created empty if missing)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"MetadataCatalog.get: dataset name must be a non-empty str, got {name!r}.")
        m = self._data.get(name)
        if m is None:  # perhaps a built-in name not registered yet
            m = self.data.get(name)
        if m is None:
            m = self._data[name] = Metadata(name=name)
        return m

    def list(self) -> list[str]:
        """Names with metadata."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Forget the metadata of ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"MetadataCatalog(registered metadata: {', '.join(self.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
