"""``CfgNode``: Detectron2/yacs-style layered config with a schema, type checks and freeze.

Layering: :func:`kiln.config.get_default_cfg` (framework defaults) < project defaults
(``add_xxx_config(cfg)`` functions that add keys, usually with ``new_allowed`` on a
sub-node or plain assignment before freezing) < ``merge_from_file`` (yaml with ``_BASE_``)
< ``merge_from_list`` (command-line ``KEY VALUE`` pairs).

Type rules for a merge into an existing key (like yacs, plus int → float):
same type is fine; ``None`` may replace or be replaced by any valid type; list ↔ tuple
convert; an int may replace a float; a bool never replaces an int (or the reverse);
anything else fails naming the key, both types and the values.
"""

from __future__ import annotations

import copy
import os
import os.path as osp
from collections.abc import Mapping, Sequence
from typing import IO, Any

from .errors import ConfigError, ConfigKeyError, FrozenConfigError, did_you_mean, invalid_yaml
from .overrides import parse_opts, parse_value

__all__ = ["CfgNode"]

_VALID_TYPES = (tuple, list, str, int, float, bool, type(None))
BASE_KEY = "_BASE_"


def _check_and_coerce(replacement: Any, original: Any, full_key: str) -> Any:
    rtype, otype = type(replacement), type(original)
    if rtype is otype:
        return replacement
    if rtype is str and otype in (tuple, list) and replacement.lstrip()[:1] in ("(", "["):
        # yacs decodes yaml strings literally: TRAIN: ("coco_2017_train",) is a tuple (seed 002)
        from .overrides import parse_value

        replacement = parse_value(replacement)
        rtype = type(replacement)
        if rtype is otype:
            return replacement
    if isinstance(original, CfgNode) and isinstance(replacement, dict):
        return replacement
    if replacement is None and otype in _VALID_TYPES:
        return replacement
    if original is None and (rtype in _VALID_TYPES or isinstance(replacement, dict)):
        return replacement
    if otype is tuple and rtype is list:
        return tuple(replacement)
    if otype is list and rtype is tuple:
        return list(replacement)
    if otype is float and rtype is int:
        return float(replacement)
    if otype is str and isinstance(replacement, (int, float)) and not isinstance(replacement, bool):
        # a numeric-looking string on the command line, e.g. DATASETS.NAME 2017
        raise ConfigError(
            f"Config key '{full_key}' holds a str ({original!r}) but got {rtype.__name__} "
            f"{replacement!r}. Quote the value (e.g. \"'{replacement}'\") to pass it as a string."
        )
    hint = ""
    if isinstance(original, (tuple, list)) and not isinstance(replacement, (tuple, list)):
        hint = (f" Write a sequence even for one value: {full_key} \"({replacement!r},)\" on the command "
                f"line, ({replacement!r},) in a file.")
    elif isinstance(original, int) and isinstance(replacement, float) and not isinstance(original, bool):
        hint = f" Write a whole number, e.g. {full_key} {int(replacement)}."
    raise ConfigError(
        f"Type mismatch for config key '{full_key}': the default is {otype.__name__} "
        f"({original!r}) but the new value is {rtype.__name__} ({replacement!r}).{hint}"
    )


class CfgNode(dict):
    """A nested, attribute-accessible config node with schema checks and freezing.

    Args:
        init_dict: initial values (nested dicts become ``CfgNode``).
        key_list: the path of this node from the root (for messages).
        new_allowed: whether merges may add keys that the node does not define.

    Example::

        >>> cfg = CfgNode({'SOLVER': {'BASE_LR': 0.01}})
        >>> cfg.merge_from_list(['SOLVER.BASE_LR', '0.02'])
        >>> cfg.SOLVER.BASE_LR
        0.02
    """

    IMMUTABLE = "__immutable__"
    NEW_ALLOWED = "__new_allowed__"

    def __init__(
        self,
        init_dict: Mapping | None = None,
        key_list: Sequence[str] | None = None,
        new_allowed: bool = False,
    ) -> None:
        key_list = list(key_list or [])
        super().__init__()
        self.__dict__[CfgNode.IMMUTABLE] = False
        self.__dict__[CfgNode.NEW_ALLOWED] = new_allowed
        self.__dict__["_key_list"] = key_list
        for key, value in (init_dict or {}).items():
            dict.__setitem__(self, key, self._convert(value, [*key_list, str(key)], new_allowed))

    @classmethod
    def _convert(cls, value: Any, key_list: list[str], new_allowed: bool) -> Any:
        if isinstance(value, CfgNode):
            value._set_key_list(key_list)
            return value
        if isinstance(value, dict):
            return cls(value, key_list, new_allowed)
        return value

    def _set_key_list(self, key_list: list[str]) -> None:
        # a node built on its own and attached later learns its path, for messages
        self.__dict__["_key_list"] = list(key_list)
        for key, value in self.items():
            if isinstance(value, CfgNode):
                value._set_key_list([*key_list, str(key)])

    # ---------------------------------------------------------------- access
    def _path(self, key: str) -> str:
        return ".".join([*self.__dict__["_key_list"], key])

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"Config has no key '{self._path(name)}'.{did_you_mean(name, self)}")

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if self.is_frozen():
            raise FrozenConfigError(
                f"Cannot set '{self._path(str(key))}' = {value!r}: the config is frozen. Call "
                f"cfg.defrost() first (or edit a cfg.clone())."
            )
        dict.__setitem__(self, key, self._convert(value, [*self.__dict__["_key_list"], str(key)],
                                                  self.is_new_allowed()))

    def __delattr__(self, name: str) -> None:
        if self.is_frozen():
            raise FrozenConfigError(f"Cannot delete '{self._path(name)}': the config is frozen.")
        del self[name]

    def __delitem__(self, key: str) -> None:
        if self.is_frozen():
            raise FrozenConfigError(f"Cannot delete '{self._path(str(key))}': the config is frozen.")
        dict.__delitem__(self, key)

    def __repr__(self) -> str:
        return f"CfgNode({dict.__repr__(self)})"

    def __str__(self) -> str:
        return self.dump()  # type: ignore[return-value]

    def __reduce__(self) -> Any:
        return (_rebuild_node, (dict(self), self.__dict__["_key_list"], self.is_new_allowed(),
                                self.is_frozen()))

    def __deepcopy__(self, memo: dict) -> CfgNode:
        node = CfgNode({}, self.__dict__["_key_list"], self.is_new_allowed())
        memo[id(self)] = node
        for key, value in self.items():
            dict.__setitem__(node, key, copy.deepcopy(value, memo))
        if self.is_frozen():
            node.freeze()
        return node

    # --------------------------------------------------------------- freezing
    def freeze(self) -> None:
        """Make this node and all children read-only."""
        self._set_immutable(True)

    def defrost(self) -> None:
        """Make this node and all children writable again."""
        self._set_immutable(False)

    def is_frozen(self) -> bool:
        """Whether writes are rejected."""
        return self.__dict__[CfgNode.IMMUTABLE]

    def _set_immutable(self, flag: bool) -> None:
        self.__dict__[CfgNode.IMMUTABLE] = flag
        for value in self.values():
            if isinstance(value, CfgNode):
                value._set_immutable(flag)

    def set_new_allowed(self, flag: bool) -> None:
        """Allow (or forbid) merges to add keys, on this node and its children."""
        self.__dict__[CfgNode.NEW_ALLOWED] = flag
        for value in self.values():
            if isinstance(value, CfgNode):
                value.set_new_allowed(flag)

    def is_new_allowed(self) -> bool:
        """Whether merges may add keys to this node."""
        return self.__dict__[CfgNode.NEW_ALLOWED]

    def clone(self) -> CfgNode:
        """A deep copy (frozen state included)."""
        return copy.deepcopy(self)

    # ---------------------------------------------------------------- merging
    def merge_from_other_cfg(self, other: Mapping) -> None:
        """Merge a dict or CfgNode into this one, with schema and type checks."""
        self._merge(other, self, [])

    def _merge(self, src: Mapping, dst: CfgNode, key_list: list[str]) -> None:
        if dst.is_frozen():
            raise FrozenConfigError(
                f"Cannot merge into a frozen config (at '{'.'.join(key_list) or '<root>'}'); "
                f"call cfg.defrost() first."
            )
        for key, value in src.items():
            full = ".".join([*key_list, str(key)])
            if key in dst:
                old = dst[key]
                if isinstance(old, CfgNode) and isinstance(value, Mapping):
                    self._merge(value, old, [*key_list, str(key)])
                    continue
                value = _check_and_coerce(value, old, full)
                dst[key] = value
            elif dst.is_new_allowed():
                dst[key] = value
            else:
                raise ConfigKeyError(
                    f"Non-existent config key: '{full}'.{did_you_mean(str(key), dst)} The schema "
                    f"(defaults) must define a key before a file or the command line sets it; "
                    f"add it in an add_xxx_config(cfg) function."
                )

    def merge_from_file(self, cfg_filename: str | os.PathLike, allow_unsafe: bool = False) -> None:
        """Merge a yaml/json file (``_BASE_`` chains are followed, relative to each file).

        ``allow_unsafe`` exists for Detectron2 compatibility only: yaml is always loaded safely (its
        ``!!python/object/apply:eval`` expressions by a restricted evaluator), so it changes nothing.
        On a root node whose schema has an int ``VERSION`` (Detectron2's), an older file is upgraded
        first (:mod:`kiln.config.d2_compat`).
        """
        loaded = self.load_yaml_with_base(str(cfg_filename))
        latest = self.get("VERSION") if not self.__dict__["_key_list"] else None
        if isinstance(latest, int) and not isinstance(latest, bool):
            from .d2_compat import upgrade_loaded_cfg

            arch = (self.get("MODEL") or {}).get("META_ARCHITECTURE", "GeneralizedRCNN")
            loaded = upgrade_loaded_cfg(loaded, latest, arch, str(cfg_filename))
        self.merge_from_other_cfg(loaded)

    @classmethod
    def load_yaml_with_base(cls, filename: str, _stack: tuple[str, ...] = ()) -> dict:
        """Load a yaml (or json) file and merge its ``_BASE_`` file(s) under it."""
        from kiln.fileio.yaml_io import YAMLError, yaml_load

        path = osp.abspath(osp.expanduser(filename))
        if path in _stack:
            raise ConfigError(f"Circular _BASE_ inheritance: {' -> '.join((*_stack, path))}")
        if not osp.isfile(path):
            raise ConfigError(f"Config file {filename!r} does not exist (cwd: {os.getcwd()}).")
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml_load(f) or {}
            except YAMLError as exc:
                raise invalid_yaml(filename, exc) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{filename}: a config must be a mapping at the top level.")
        bases = data.pop(BASE_KEY, None) or data.pop("_base_", None)
        if not bases:
            return data
        merged: dict = {}
        for base in [bases] if isinstance(bases, str) else bases:
            base_path = base if osp.isabs(base) else osp.join(osp.dirname(path), base)
            _merge_plain(cls.load_yaml_with_base(base_path, (*_stack, path)), merged)
        _merge_plain(data, merged)
        return merged

    def merge_from_list(self, cfg_list: Sequence[Any]) -> None:
        """Merge ``['KEY.SUB', 'value', ...]`` pairs (values parsed literally)."""
        if self.is_frozen():
            raise FrozenConfigError("Cannot merge_from_list into a frozen config; call cfg.defrost().")
        for full, value in parse_opts(list(cfg_list)).items():
            self._set_dotted(full, value)

    def _set_dotted(self, full: str, value: Any) -> None:
        parts = full.split(".")
        node: CfgNode = self
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                done = ".".join(parts[: i + 1])
                raise ConfigKeyError(f"Non-existent config key: '{done}' (in '{full}')."
                                     f"{did_you_mean(part, node)}")
            nxt = node[part]
            if not isinstance(nxt, CfgNode):
                raise ConfigKeyError(f"Config key '{'.'.join(parts[: i + 1])}' is not a node; "
                                     f"cannot set '{full}'.")
            node = nxt
        last = parts[-1]
        if last not in node:
            if not node.is_new_allowed():
                raise ConfigKeyError(f"Non-existent config key: '{full}'.{did_you_mean(last, node)}")
            node[last] = value
            return
        node[last] = _check_and_coerce(value, node[last], full)

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict:
        """Plain nested dicts."""
        return {k: v.to_dict() if isinstance(v, CfgNode) else copy.deepcopy(v) for k, v in self.items()}

    def dump(self, stream: IO | None = None, **kwargs: Any) -> str | None:
        """YAML text of the config (written to ``stream`` when given)."""
        from kiln.fileio.yaml_io import yaml_dump

        return yaml_dump(self.to_dict(), stream, **kwargs)

    @staticmethod
    def parse_value(text: str) -> Any:
        """Parse one command-line value literally (see :func:`kiln.config.parse_value`)."""
        return parse_value(text)


def _merge_plain(src: Mapping, dst: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge_plain(value, dst[key])
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def _rebuild_node(data: dict, key_list: list[str], new_allowed: bool, frozen: bool) -> CfgNode:
    node = CfgNode(data, key_list, new_allowed)
    if frozen:
        node.freeze()
    return node
