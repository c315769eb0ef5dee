"""``Config``: a loaded config file (MM style) with its filename, text and editing helpers."""

from __future__ import annotations

import copy
import os
import os.path as osp
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .config_dict import ConfigDict, to_plain
from .errors import ConfigError
from .formatting import format_py
from .loading import load_config_file, load_config_text
from .merge import set_by_dotted_key
from .overrides import NEW_KEY_PREFIX, parse_cfg_options

__all__ = ["Config", "MISSING"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


_RESERVED = ("filename", "text", "pretty_text")

MISSING = _Missing()
"""Marks a key present on only one side of :meth:`Config.diff`."""


def _normalize_options(options: Mapping | Sequence[str] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    if isinstance(options, str):
        options = [options]
    return parse_cfg_options(list(options))


class Config:
    """A config loaded from a .py/.json/.yaml file, a string, or a dict.

    Values are read as attributes or items (``cfg.model.backbone.depth``,
    ``cfg['model']``). See docs/config.md for inheritance (``_base_``, ``_delete_``),
    variables (``{{ fileDirname }}``, ``{{_base_.x}}``, ``{{$ENV:default}}``) and overrides.

    Example::

        >>> cfg = Config(dict(model=dict(type='RetinaNet', depth=50)))
        >>> cfg.merge_from_dict({'model.depth': 101})
        >>> cfg.model.depth
        101
    """

    def __init__(
        self,
        cfg_dict: Mapping | None = None,
        cfg_text: str | None = None,
        filename: str | os.PathLike | None = None,
    ) -> None:
        if cfg_dict is None:
            cfg_dict = {}
        elif not isinstance(cfg_dict, Mapping):
            raise TypeError(f"Config(cfg_dict) needs a dict, got {type(cfg_dict).__name__}.")
        for key in _RESERVED:
            if key in cfg_dict:
                raise ConfigError(f"'{key}' is a reserved name in kiln configs; rename the key.")
        object.__setattr__(self, "_cfg_dict", ConfigDict(cfg_dict))
        object.__setattr__(self, "_filename", str(filename) if filename is not None else None)
        object.__setattr__(self, "_text", cfg_text if cfg_text is not None else "")

    # ------------------------------------------------------------------ loading
    @staticmethod
    def fromfile(
        filename: str | os.PathLike,
        cfg_options: Mapping | Sequence[str] | None = None,
        *,
        overrides: Mapping | Sequence[str] | None = None,
        use_predefined_variables: bool = True,
        use_environment_variables: bool = True,
        import_custom_modules: bool = True,
    ) -> Config:
        """Load a config file, merging its ``_base_`` files and applying overrides.

        ``cfg_options`` (alias ``overrides``) is a dict ``{'a.b': 1, 'seed': 0}`` or a list of
        ``'a.b=1'`` strings; keys that do not exist yet are created (MMEngine's rule). An
        override whose key is a top-level name assigned in a .py file of the chain
        (``data_root``) replaces the value at that assignment, so values computed from it
        (``ann_file=data_root + ...``) follow; other overrides apply after loading.
        ``custom_imports=dict(imports=[...], allow_failed_imports=False)`` in the config is
        imported so that its registrations are visible.
        """
        options = _normalize_options(cfg_options)
        options.update(_normalize_options(overrides))
        var_overrides = {}
        for key, value in options.items():
            bare = key[len(NEW_KEY_PREFIX):] if key.startswith(NEW_KEY_PREFIX) else key
            if bare.isidentifier():
                var_overrides[bare] = value
        loaded = load_config_file(
            str(filename),
            var_overrides=var_overrides,
            use_predefined_variables=use_predefined_variables,
            use_environment_variables=use_environment_variables,
        )
        cfg = Config(loaded.cfg, cfg_text=loaded.text, filename=str(filename))
        object.__setattr__(cfg, "_files", loaded.files)
        post = {}
        for key, value in options.items():
            bare = key[len(NEW_KEY_PREFIX):] if key.startswith(NEW_KEY_PREFIX) else key
            if bare in loaded.applied_vars and bare not in cfg._cfg_dict:
                continue  # applied at its assignment; the name itself is not a config key
            post[key] = value
        if post:
            cfg.merge_from_dict(post)
        if import_custom_modules and cfg._cfg_dict.get("custom_imports"):
            cfg.import_custom_modules()
        return cfg

    @staticmethod
    def fromstring(cfg_str: str, file_format: str) -> Config:
        """Load a config from text; ``file_format`` is ``.py``, ``.json``, ``.yaml`` or ``.yml``.

        Relative ``_base_`` paths resolve against the current directory.
        """
        fmt = file_format if file_format.startswith(".") else f".{file_format}"
        loaded = load_config_text(cfg_str, osp.join(os.getcwd(), f"<string>{fmt}"))
        return Config(loaded.cfg, cfg_text=cfg_str)

    def import_custom_modules(self) -> list[Any]:
        """Import ``custom_imports.imports`` (so their ``register_module`` calls run)."""
        from kiln.registry import import_modules

        spec = self._cfg_dict.get("custom_imports")
        if not spec:
            return []
        if not isinstance(spec, Mapping) or "imports" not in spec:
            raise ConfigError(
                f"custom_imports must be dict(imports=[...], allow_failed_imports=False), got {spec!r}."
            )
        unknown = set(spec) - {"imports", "allow_failed_imports"}
        if unknown:
            raise ConfigError(f"custom_imports has unknown keys {sorted(unknown)}; "
                              f"allowed: imports, allow_failed_imports.")
        return import_modules(spec["imports"], spec.get("allow_failed_imports", False))

    # -------------------------------------------------------------- properties
    @property
    def filename(self) -> str | None:
        """The path this config was loaded from (None for dicts and strings)."""
        return self._filename

    @property
    def text(self) -> str:
        """The original text of the file (before variable substitution)."""
        return self._text

    @property
    def files(self) -> list[str]:
        """Absolute paths of every file read to build this config (itself first)."""
        return list(getattr(self, "_files", [self._filename] if self._filename else []))

    @property
    def pretty_text(self) -> str:
        """The config as Python source that :meth:`fromfile` loads back identically."""
        return format_py(self._cfg_dict)

    # ---------------------------------------------------------------- editing
    def merge_from_dict(self, options: Mapping[str, Any], allow_list_keys: bool = True) -> None:
        """Apply ``{'a.b.c': 1, 'list.0.x': 2, 'new.key': 3}`` edits (MMEngine's rule).

        Dotted keys walk nested dicts; integer parts index lists (when ``allow_list_keys``).
        A key that does not exist yet is created with any missing parent dicts, as MMEngine
        does (``seed=0``); a leading ``+`` is accepted and means the same. A misspelled key is
        caught later, where it is used (the run-key check of the dialect, or the registry
        build of the object it is passed to). A dict value merges into an existing dict
        (``_delete_`` replaces).
        """
        if not isinstance(options, Mapping):
            raise TypeError(f"merge_from_dict needs a dict, got {type(options).__name__}.")
        for key, value in options.items():
            if not allow_list_keys:
                parts = key.lstrip(NEW_KEY_PREFIX).split(".")
                if any(p.lstrip("-").isdigit() for p in parts):
                    raise ConfigError(f"Override key '{key}' indexes a list, but allow_list_keys=False.")
            set_by_dotted_key(self._cfg_dict, key, value)

    def merge_from_list(self, options: Sequence[str]) -> None:
        """Apply ``['a.b=1', 'c=[1,2]']`` (MM ``--cfg-options`` grammar)."""
        self.merge_from_dict(parse_cfg_options(options))

    # ------------------------------------------------------------------ output
    def dump(self, file: str | os.PathLike | None = None, file_format: str | None = None) -> str | None:
        """Write the config to ``file`` (format from its suffix) or return it as a string.

        ``.py`` output round-trips exactly; ``.yaml`` keeps tuples (``!tuple``); ``.json``
        turns tuples into lists. Without ``file`` the format defaults to that of
        :attr:`filename`, else ``.py``. Local writes are atomic.
        """
        if file_format is None:
            src = str(file) if file is not None else (self._filename or "x.py")
            file_format = osp.splitext(src)[1] or ".py"
        fmt = file_format.lower().lstrip(".")
        if fmt == "py":
            text = self.pretty_text
        elif fmt == "json":
            from kiln.fileio import dump as io_dump

            text = io_dump(self.to_dict(), file_format="json", indent=2)
        elif fmt in ("yaml", "yml"):
            from kiln.fileio.yaml_io import yaml_dump

            text = yaml_dump(self.to_dict())
        else:
            raise ConfigError(f"Cannot dump a config as {file_format!r}; use .py, .json, .yaml or .yml.")
        if file is None:
            return text
        from kiln.fileio import atomic_write_text

        atomic_write_text(str(file), text)
        return None

    @staticmethod
    def diff(a: Config | Mapping, b: Config | Mapping) -> dict[str, tuple[Any, Any]]:
        """Flat differences ``{'a.b': (value_in_a, value_in_b)}``; :data:`MISSING` marks absence."""
        out: dict[str, tuple[Any, Any]] = {}

        def walk(x: Any, y: Any, path: str) -> None:
            if isinstance(x, Mapping) and isinstance(y, Mapping):
                for key in list(x) + [k for k in y if k not in x]:
                    sub = f"{path}.{key}" if path else str(key)
                    walk(x.get(key, MISSING), y.get(key, MISSING), sub)
            elif (isinstance(x, (list, tuple)) and isinstance(y, (list, tuple))
                  and type(x) is type(y) and len(x) == len(y)):
                for i, (xi, yi) in enumerate(zip(x, y)):
                    walk(xi, yi, f"{path}.{i}")
            elif type(x) is not type(y) or x != y:
                out[path] = (x, y)

        walk(to_plain(a._cfg_dict if isinstance(a, Config) else a),
             to_plain(b._cfg_dict if isinstance(b, Config) else b), "")
        return out

    def to_dict(self) -> dict:
        """Plain nested dicts/lists (no ConfigDict)."""
        return to_plain(self._cfg_dict)

    # ------------------------------------------------------- mapping protocol
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._cfg_dict, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RESERVED:
            raise ConfigError(f"'{name}' is a read-only Config property, not a config key.")
        self._cfg_dict[name] = value

    def __delattr__(self, name: str) -> None:
        delattr(self._cfg_dict, name)

    def __getitem__(self, key: str) -> Any:
        return self._cfg_dict[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _RESERVED:
            raise ConfigError(f"'{key}' is a reserved name in kiln configs; use another key.")
        self._cfg_dict[key] = value

    def __delitem__(self, key: str) -> None:
        del self._cfg_dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __contains__(self, key: object) -> bool:
        return key in self._cfg_dict

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == to_plain(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get`` on the top level."""
        return self._cfg_dict.get(key, default)

    def keys(self) -> Any:
        """Top-level keys."""
        return self._cfg_dict.keys()

    def values(self) -> Any:
        """Top-level values."""
        return self._cfg_dict.values()

    def items(self) -> Any:
        """Top-level items."""
        return self._cfg_dict.items()

    def pop(self, key: str, *default: Any) -> Any:
        """``dict.pop`` on the top level."""
        return self._cfg_dict.pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault`` on the top level."""
        return self._cfg_dict.setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update`` on the top level (replaces values)."""
        self._cfg_dict.update(*args, **kwargs)

    def copy(self) -> Config:
        """A shallow copy."""
        return self.__copy__()

    def __copy__(self) -> Config:
        new = Config.__new__(Config)
        new.__dict__.update(self.__dict__)
        object.__setattr__(new, "_cfg_dict", self._cfg_dict.copy())
        return new

    def __deepcopy__(self, memo: dict) -> Config:
        new = Config.__new__(Config)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            object.__setattr__(new, key, copy.deepcopy(value, memo))
        return new

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return f"Config (path: {self._filename}):\n{self.pretty_text}"


# A Config reads like a mapping (keys, items, get, []): let isinstance(cfg, Mapping) say so,
# so that code accepting dicts (Registry.build, ``**cfg``) accepts a Config too.
Mapping.register(Config)
