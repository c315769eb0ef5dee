"""Reading pickles that hold only data: numpy arrays and scalars in plain containers.

Detectron2 and Caffe2 weight files (``R-50.pkl``, ``model_final_*.pkl``), Detectron2/MMDetection
proposal files and MMDetection annotation pickles are pickles of dicts, lists and numpy arrays. A plain
``pickle.load`` would also run whatever code a crafted file names; :func:`safe_load` constructs only the
globals listed in :data:`ALLOWED_GLOBALS` (numpy's array, dtype and scalar reconstructors and a few
standard containers) and refuses anything else, naming the file and the global.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import IO, Any

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load", "safe_loads"]

#: (module, name) pairs a data pickle may construct. numpy 1.x pickles name ``numpy.core``; numpy 2.x
#: ones ``numpy._core`` (numpy 2 still resolves both).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
       ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"), ("builtins", "set"),
       ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"), ("builtins", "range"),
       ("builtins", "bytes"), ("builtins", "bytearray"),
       ("_codecs", "encode")]  # protocol-2 pickles spell bytes as _codecs.encode(str, "latin1")
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that a data-only pickle has no reason to construct."""


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 pickles (Caffe2/Detectron1 weights)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # Python 2 spelling (protocol <= 2)
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: the pickle asks to construct {module}.{name}; kiln reads pickles that hold "
            f"only data (dicts, lists, numbers, strings, numpy arrays) and refuses other objects, because "
            f"unpickling them can run code. Convert the file to json/.pth, or if you trust it, load it "
            f"yourself with pickle.load."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: persistent ids (torch.save files) are not data pickles; "
                                f"load .pth files with torch.load(weights_only=True)")


def safe_load(file: str | os.PathLike | IO[bytes]) -> Any:
    """Unpickle ``file`` (a path or a binary file object), constructing only data (see module doc)."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return _DataUnpickler(f, f"'{os.fspath(file)}'").load()
    return _DataUnpickler(file, f"'{getattr(file, 'name', '<stream>')}'").load()


def safe_loads(data: bytes) -> Any:
    """:func:`safe_load` for bytes in memory."""
    return _DataUnpickler(io.BytesIO(data), "<bytes>").load()
