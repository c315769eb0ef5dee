"""kiln: a config-driven PyTorch training framework with an object-detection toolbox.

``import kiln`` is cheap: subpackages (and torch, cv2, pycocotools, tensorboard) load on
first attribute access, e.g. ``kiln.config`` or ``kiln.engine``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "cli", "config", "data", "engine", "evaluation", "fileio", "image", "model_zoo", "models",
    "registry", "structures", "utils", "visualization",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"kiln.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'kiln' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
