"""Small helpers shared across kiln: seeding, plain-python conversion."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["set_random_seed", "to_plain", "is_seq_of"]

def set_random_seed(seed: int | None = None, deterministic: bool = False) -> int:
    """Seed python ``random``, numpy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed; ``None`` draws one from ``os.urandom`` (returned so it can be logged).
        deterministic: also ask torch for deterministic algorithms (slower, bit-stable across runs).

    Returns:
        The seed used.
    """
    import numpy as np
    import torch

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed


def to_plain(obj: Any) -> Any:
    """Convert numpy arrays/scalars, tuples and mappings into plain python types, recursively.

    Checkpoint meta goes through this so it loads under ``torch.load(weights_only=True)``.
    Tensors are kept (weights_only loads them); other objects are returned unchanged.
    """
    if isinstance(obj, (str, bytes, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    module = type(obj).__module__
    if module == "numpy":
        return obj.tolist()
    return obj


def is_seq_of(seq: Any, expected_type: type | tuple[type, ...]) -> bool:
    """Whether ``seq`` is a list/tuple whose items are all instances of ``expected_type``."""
    return isinstance(seq, (list, tuple)) and all(isinstance(x, expected_type) for x in seq)
