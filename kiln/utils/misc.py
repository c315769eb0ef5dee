"""Small helpers shared across kiln: plain-python conversion, type checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["to_plain", "is_seq_of", "exception_in_chain"]

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


def exception_in_chain(exc: BaseException | None, types: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s chain (``exc``, then its ``__cause__`` or
    ``__context__``, ...), or ``None``: what a wrapper (a hook's error, torch's RuntimeError around a
    failed write) was caused by."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, types):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
