"""Reading a config value: the one helper every part of kiln uses.

Configs arrive as plain dicts, :class:`~kiln.config.ConfigDict` (a mapping), Detectron2-style
``CfgNode`` objects (attribute access) or ``None`` (an optional section left out). Both helpers
take a dotted key (``"SOLVER.BASE_LR"``, ``"model.backbone.depth"``):

* :func:`cfg_get` returns ``default`` when any part is missing or the value is ``None`` (a key set to
  ``None`` means "not set", as in MMEngine configs);
* :func:`cfg_lookup` is the strict form: without ``default`` a missing key is a ``KeyError`` that names
  it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["cfg_get", "cfg_lookup"]

_MISSING = object()


def _walk(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None:
            return _MISSING
        if isinstance(node, Mapping):
            node = node[part] if part in node else _MISSING
        else:
            try:
                node = getattr(node, part)
            except (AttributeError, KeyError):  # config nodes raise either for a missing key
                node = _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` (dotted keys walk nested sections); ``default`` if absent or ``None``.

    >>> cfg_get({'a': {'b': 1}}, 'a.b'), cfg_get({'a': None}, 'a', 3), cfg_get(None, 'x', 0)
    (1, 3, 0)
    """
    value = _walk(cfg, key)
    return default if value is _MISSING or value is None else value


def cfg_lookup(cfg: Any, dotted: str, default: Any = _MISSING) -> Any:
    """``cfg.A.B`` for a dotted key ``"A.B"``; a missing key returns ``default``, or without one raises
    a ``KeyError`` naming the key. (A key set to ``None`` is returned as ``None``.)
    """
    value = _walk(cfg, dotted)
    if value is _MISSING:
        if default is _MISSING:
            raise KeyError(f"The config has no '{dotted}'; set it (e.g. --opts {dotted} VALUE).")
        return default
    return value
