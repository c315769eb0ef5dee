"""Image IO and geometry/photometry on numpy images (HWC, uint8 or float, BGR by default).

``import kiln.image`` is cheap: numpy and OpenCV load on the first use of a function.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "imread": "io", "imfrombytes": "io", "imwrite": "io", "imshow": "io",
    "imresize": "geometric", "imrescale": "geometric", "rescale_size": "geometric",
    "imflip": "geometric", "impad": "geometric", "impad_to_multiple": "geometric",
    "imnormalize": "photometric", "imdenormalize": "photometric", "bgr2rgb": "photometric",
    "rgb2bgr": "photometric", "bgr2gray": "photometric", "gray2bgr": "photometric",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"kiln.image.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kiln.image' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
