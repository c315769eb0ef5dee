"""Freezing submodules for fine-tuning (``frozen_modules`` in a run config)."""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch.nn as nn

from kiln.config.dialects.canonical import FREEZE_GROUPS

__all__ = ["FREEZE_GROUPS", "freeze_modules"]


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    # A frozen module must not update BatchNorm statistics when the runner calls model.train().
    return type(self).train(self, False)


def freeze_modules(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Freeze the named submodules (dotted paths or :data:`FREEZE_GROUPS` names); return the parameter names.

    Parameters get ``requires_grad=False`` and the modules stay in eval mode even when the runner
    calls ``model.train()``, so BatchNorm statistics do not drift either.

    Raises:
        KeyError: a path the model does not have (similar paths are listed).
    """
    frozen: list[str] = []
    modules = dict(model.named_modules())
    for name in names:
        for path in FREEZE_GROUPS.get(name, [name]):
            if path not in modules:
                close = [m for m in modules if m and (path in m or m in path)][:5]
                raise KeyError(f"frozen_modules: model has no submodule '{path}'"
                               + (f"; similar: {close}" if close else ""))
            module = modules[path]
            for pname, param in module.named_parameters():
                param.requires_grad_(False)
                frozen.append(f"{path}.{pname}")
            module.eval()
            module.train = types.MethodType(_stay_in_eval, module)  # type: ignore[method-assign]
    return frozen
