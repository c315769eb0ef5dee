"""``ConfigDict``: a dict whose keys are also attributes, with nested dicts converted."""

from __future__ import annotations

import copy
from typing import Any

from .errors import ConfigKeyError, did_you_mean


def to_config_value(value: Any) -> Any:
    """Convert dicts (also inside lists and tuples) to :class:`ConfigDict`, recursively."""
    if isinstance(value, ConfigDict):
        return value
    if isinstance(value, dict):
        return ConfigDict(value)
    if isinstance(value, list):
        return [to_config_value(v) for v in value]
    if type(value) is tuple:  # named tuples keep their type and contents untouched
        return tuple(to_config_value(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """Convert :class:`ConfigDict` (also nested in lists and tuples) back to plain dicts."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if type(value) is tuple:
        return tuple(to_plain(v) for v in value)
    return value


class ConfigDict(dict):
    """A ``dict`` with attribute access: ``cfg.model.backbone.depth``.

    Nested dicts (also inside lists/tuples) become ``ConfigDict`` when set. A missing
    attribute raises ``AttributeError`` naming the key and the closest existing keys.

    Example::

        >>> d = ConfigDict(model=dict(depth=50))
        >>> d.model.depth
        50
        >>> d.model.depht
        Traceback (most recent call last):
        ...
        AttributeError: ConfigDict has no key 'depht'. Did you mean: 'depth'?
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            dict.__setitem__(self, key, to_config_value(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):  # copy/pickle probe dunders; keep that path fast
                raise AttributeError(name) from None
            raise AttributeError(
                f"ConfigDict has no key '{name}'.{did_you_mean(name, self.keys())}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"ConfigDict has no key '{name}'.") from None

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, to_config_value(value))

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Like ``dict.setdefault``; a dict default is converted to ``ConfigDict``."""
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Like ``dict.update`` (replaces values; use ``merge`` for a recursive merge)."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __missing_key(self, key: Any) -> ConfigKeyError:
        return ConfigKeyError(f"Config has no key {key!r}.{did_you_mean(str(key), map(str, self))}")

    def __getitem__(self, key: Any) -> Any:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            raise self.__missing_key(key) from None

    def copy(self) -> ConfigDict:
        """A shallow copy that is still a ``ConfigDict``."""
        return ConfigDict(dict(self))

    def __copy__(self) -> ConfigDict:
        return self.copy()

    def __deepcopy__(self, memo: dict) -> ConfigDict:
        out = ConfigDict()
        memo[id(self)] = out
        for key, value in self.items():
            dict.__setitem__(out, copy.deepcopy(key, memo), copy.deepcopy(value, memo))
        return out

    def __reduce__(self) -> Any:
        return (ConfigDict, (dict(self),))

    def to_dict(self) -> dict:
        """Return plain nested ``dict``/``list`` objects (e.g. for json or kwargs)."""
        return to_plain(self)
