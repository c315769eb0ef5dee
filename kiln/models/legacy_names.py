"""Loading kiln checkpoints saved before module names were aligned with MMDetection's.

kiln's module names equal MMDetection's so that MMDetection checkpoints load with ``strict=True``.
Older kiln checkpoints used other names in a few places; each renamed module registers a
``load_state_dict`` pre-hook (:func:`rename_on_load`) that maps its old names to the new ones, so every
loading path (runner resume, ``load_from``, ``kiln test``, plain ``load_state_dict``) keeps working.
Parameter order did not change, so optimizer state saved with old checkpoints still lines up.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch.nn as nn

__all__ = ["rename_on_load", "rename_legacy_keys", "renumber"]

Renamer = Callable[[list[str]], dict[str, str]]


def _rename(state_dict: dict, prefix: str, renamer: Renamer) -> None:
    """Apply ``renamer`` (see :func:`rename_on_load`) to the keys under ``prefix``, in place."""
    local = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
    for old, new in renamer(local).items():
        if prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


def rename_on_load(module: nn.Module, renamer: Renamer) -> None:
    """Register a pre-hook renaming old keys of ``module`` before its parameters load.

    ``renamer`` gets the keys of the state dict below this module's prefix (prefix stripped) and
    returns ``{old: new}`` for those to rename; it sees the whole set, so it can tell an old-format
    dict from a new one.
    """

    def hook(mod, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        _rename(state_dict, prefix, renamer)

    module.register_load_state_dict_pre_hook(hook)
    module.__dict__.setdefault("_kiln_legacy_renamers", []).append(renamer)


def rename_legacy_keys(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` with the old kiln names of ``model``'s renamed modules mapped to today's names.

    The same mapping the ``load_state_dict`` pre-hooks apply, for loaders that match keys themselves
    before calling ``load_state_dict`` (kiln.checkpoint_convert). Returns a new dict.
    """
    out = dict(state_dict)
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for renamer in module.__dict__.get("_kiln_legacy_renamers", ()):
            _rename(out, prefix, renamer)
    return out


def renumber(keys: list[str], name: str, index_map: Callable[[int, str], str | None]) -> dict[str, str]:
    """``{old: new}`` for keys ``name.<i>.<rest>``: the new name is ``index_map(i, rest)`` (None: keep)."""
    pattern = re.compile(rf"^{re.escape(name)}\.(\d+)\.(.+)$")
    out = {}
    for key in keys:
        m = pattern.match(key)
        if m:
            new = index_map(int(m.group(1)), m.group(2))
            if new is not None and new != key:
                out[key] = new
    return out
