"""Merging configs: base ← child (``_delete_``), and dotted-key overrides."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .config_dict import ConfigDict, to_config_value
from .errors import ConfigError, ConfigKeyError, did_you_mean
from .overrides import NEW_KEY_PREFIX

DELETE_KEY = "_delete_"


def strip_delete(value: Any) -> Any:
    """Remove leftover ``_delete_`` markers (a child dict with no base counterpart)."""
    if isinstance(value, dict):
        value.pop(DELETE_KEY, None)
        for v in value.values():
            strip_delete(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            strip_delete(v)
    return value


def merge_into(child: Mapping, base: dict, path: str = "", where: str = "") -> dict:
    """Merge ``child`` into ``base`` in place and return ``base``.

    Dicts merge recursively; lists and scalars replace. A child dict with ``_delete_=True``
    replaces the base value instead of merging. A child dict over a non-dict base value is an
    error (it is almost always a mistake) that suggests ``_delete_=True``.
    """
    for key, value in child.items():
        full = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            value = dict(value)
            delete = value.pop(DELETE_KEY, False)
            if not delete and key in base and base[key] is not None:
                if not isinstance(base[key], dict):
                    raise ConfigError(
                        f"{where}cannot merge a dict into '{full}', which is a "
                        f"{type(base[key]).__name__} ({base[key]!r}) in the base config. Add "
                        f"_delete_=True to the dict to replace the base value instead."
                    )
                merge_into(value, base[key], full, where)
                continue
            base[key] = strip_delete(value)
        else:
            base[key] = strip_delete(value)
    return base


def _index(seg: str, seq: list | tuple, full_key: str) -> int:
    try:
        idx = int(seg)
    except ValueError:
        raise ConfigKeyError(
            f"Override key '{full_key}': '{seg}' is used as a key but the value there is a "
            f"{type(seq).__name__}; use a list index (0..{len(seq) - 1})."
        ) from None
    if not -len(seq) <= idx < len(seq):
        raise ConfigKeyError(
            f"Override key '{full_key}': index {idx} is out of range for a list of length "
            f"{len(seq)}."
        )
    return idx


def set_by_dotted_key(
    root: ConfigDict, key: str, value: Any, allow_new_keys: bool = False
) -> None:
    """Set ``root['a']['b'][0]['c'] = value`` from ``key='a.b.0.c'``.

    A leading ``+`` (or ``allow_new_keys``) lets the last key — and missing intermediate
    dicts — be created; otherwise a missing key fails naming the closest existing keys.
    A dict value merged onto an existing dict merges recursively (``_delete_`` replaces).
    """
    new_ok = allow_new_keys
    if key.startswith(NEW_KEY_PREFIX):
        key, new_ok = key[len(NEW_KEY_PREFIX):], True
    segs = key.split(".")
    if not all(segs):
        raise ConfigKeyError(f"Override key {key!r} has an empty part.")
    node: Any = root
    for depth, seg in enumerate(segs):
        last = depth == len(segs) - 1
        done = ".".join(segs[: depth + 1])
        if isinstance(node, (list, tuple)):
            idx = _index(seg, node, key)
            if last:
                if isinstance(node, tuple):
                    raise ConfigError(f"Override key '{key}': cannot assign into a tuple at '{done}'.")
                node[idx] = _merged(node[idx], value)
                return
            node = node[idx]
            continue
        if not isinstance(node, dict):
            parent = ".".join(segs[:depth])
            raise ConfigKeyError(
                f"Override key '{key}': '{parent}' is a {type(node).__name__} ({node!r}), not a "
                f"dict, so it has no key '{seg}'."
            )
        if seg not in node:
            if not new_ok:
                raise ConfigKeyError(
                    f"Override key '{key}': '{done}' does not exist in the config."
                    f"{did_you_mean(seg, map(str, node))} To add a new key, write it as "
                    f"'+{key}'."
                )
            if not last:
                node[seg] = ConfigDict()
        if last:
            node[seg] = _merged(node.get(seg), value) if seg in node else to_config_value(value)
            return
        node = node[seg]


def _merged(old: Any, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(old, dict) and not value.get(DELETE_KEY, False):
        merged = copy.deepcopy(old)
        return to_config_value(merge_into(value, merged))
    if isinstance(value, dict):
        return to_config_value(strip_delete(dict(value)))
    return to_config_value(value)
