"""Merging configs: base ← child (``_delete_``), and dotted-key overrides."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .config_dict import ConfigDict, to_config_value
from .errors import ConfigError, ConfigKeyError
from .overrides import NEW_KEY_PREFIX

DELETE_KEY = "_delete_"


def strip_delete(value: Any) -> Any:
    """Return ``value`` without ``_delete_`` markers (a child dict with no base counterpart).

    Containers are copied rather than edited, so a dict the caller still holds keeps its marker.
    """
    if isinstance(value, dict):
        return {k: strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [strip_delete(v) for v in value]
    if type(value) is tuple:
        return tuple(strip_delete(v) for v in value)
    return value


def merge_into(child: Mapping, base: Mapping, path: str = "", where: str = "") -> ConfigDict:
    """Return ``base`` with ``child`` merged over it; neither argument is modified.

    Dicts merge recursively; lists and scalars replace. A child dict with ``_delete_=True``
    replaces the base value instead of merging. A child dict over a non-dict base value is an
    error (it is almost always a mistake) that suggests ``_delete_=True``.

    Like MMEngine's ``Config._merge_a_into_b`` the merge copies each level it changes instead
    of writing into ``base``: a base object that two keys share (``test_dataloader =
    val_dataloader`` in MMDetection's dataset bases) keeps its value under the key the child
    did not touch. Unlike MMEngine, a dict may replace a ``None`` base value, and a stray
    ``_delete_`` (no base value to delete) is dropped rather than left in the result.
    """
    out = ConfigDict(base)  # shallow: untouched sub-objects stay shared, as in MMEngine
    for key, value in child.items():
        full = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            value = dict(value)
            delete = value.pop(DELETE_KEY, False)
            if not delete and key in out and out[key] is not None:
                if not isinstance(out[key], dict):
                    raise ConfigError(
                        f"{where}cannot merge a dict into '{full}', which is a "
                        f"{type(out[key]).__name__} ({out[key]!r}) in the base config. Add "
                        f"_delete_=True to the dict to replace the base value instead."
                    )
                out[key] = merge_into(value, out[key], full, where)
                continue
            out[key] = strip_delete(value)
        else:
            out[key] = strip_delete(value)
    return out


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


def set_by_dotted_key(root: ConfigDict, key: str, value: Any) -> None:
    """Set ``root['a']['b'][0]['c'] = value`` from ``key='a.b.0.c'`` (MMEngine's rule).

    As in MMEngine's ``merge_from_dict(allow_list_keys=True)``, a key that does not exist yet
    is created, with any missing parent dicts (``seed=0``, ``model.backbone.init_cfg=None``).
    A misspelled key is therefore not refused here; it is caught when the config is used: an
    unknown top-level run key by the dialect check, a key inside an object's dict by the
    registry build (the constructor does not take it). A leading ``+`` (kiln's older spelling
    for "create this key") is accepted and means the same. Integer parts index lists (out of
    range is an error); a dict value merged onto an existing dict merges recursively
    (``_delete_`` replaces).
    """
    if key.startswith(NEW_KEY_PREFIX):
        key = key[len(NEW_KEY_PREFIX):]
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
                f"dict, so it has no key '{seg}'. Override '{parent}' itself, or give it a dict "
                f"value first."
            )
        if last:
            node[seg] = _merged(node.get(seg), value) if seg in node else _merged(None, value)
            return
        if node.get(seg) is None:  # missing (or None): the override creates the dict
            node[seg] = ConfigDict()
        node = node[seg]


def _merged(old: Any, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(old, dict) and not value.get(DELETE_KEY, False):
        return merge_into(value, copy.deepcopy(old))
    if isinstance(value, dict):
        return to_config_value(strip_delete(dict(value)))
    return to_config_value(value)
