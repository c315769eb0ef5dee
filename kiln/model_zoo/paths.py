"""Shipped configs as package data, and the ``kiln::`` prefix that names them.

``kiln::retinanet/retinanet_r50_fpn_1x_coco.py`` means the file of that relative path under
``kiln/model_zoo/configs/``. It works anywhere a config path is accepted: the ``kiln`` command's
CONFIG argument, ``Config.fromfile`` and ``_base_`` entries of user configs (the config loader calls
:func:`resolve_config_path`). The ``.py`` suffix may be left out.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = ["CONFIG_ROOT", "KILN_PREFIX", "is_kiln_path", "resolve_config_path", "list_configs"]

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
KILN_PREFIX = "kiln::"
_SUFFIXES = (".py", ".yaml", ".yml", ".json")


def is_kiln_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a shipped config (``'kiln::...'``)."""
    return isinstance(path, str) and path.startswith(KILN_PREFIX)


def list_configs(include_bases: bool = False) -> list[str]:
    """Relative names (``'retinanet/retinanet_r50_fpn_1x_coco.py'``) of the shipped configs."""
    names = []
    for p in sorted(CONFIG_ROOT.rglob("*")):
        if p.suffix not in _SUFFIXES or not p.is_file():
            continue
        rel = p.relative_to(CONFIG_ROOT).as_posix()
        if not include_bases and rel.startswith("_base_/"):
            continue
        names.append(rel)
    return names


def resolve_config_path(path: str | os.PathLike) -> str:
    """Map ``'kiln::rel/path.py'`` to the shipped file; return any other path unchanged.

    Raises:
        FileNotFoundError: the shipped config does not exist; the message lists close names.
    """
    if not is_kiln_path(path):
        return os.fspath(path)
    rel = str(path)[len(KILN_PREFIX):].lstrip("/")
    candidate = CONFIG_ROOT / rel
    if not candidate.suffix and not candidate.is_file():
        for suffix in _SUFFIXES:
            if candidate.with_suffix(suffix).is_file():
                candidate = candidate.with_suffix(suffix)
                break
    # Refuse '..' escapes: kiln:: names only files inside the shipped tree.
    resolved = candidate.resolve()
    if CONFIG_ROOT not in resolved.parents or not resolved.is_file():
        known = list_configs(include_bases=True)
        close = difflib.get_close_matches(rel, known, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(KILN_PREFIX + c for c in close)}?" if close else ""
        raise FileNotFoundError(
            f"No shipped config '{path}' (looked for {candidate}).{hint} "
            f"List them with `kiln zoo list --configs`."
        )
    return str(resolved)
