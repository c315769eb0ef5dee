"""Reading a checkpoint file of any publisher, with the format told from the bytes, not the file name.

* a zip archive, or a legacy ``torch.save`` stream: ``torch.load(weights_only=True)`` (kiln, MMDetection,
  Detectron2 ``.pth``, torchvision);
* any other pickle: :func:`kiln.fileio.safe_pickle.safe_load`, which builds numpy arrays and plain containers
  only (Detectron2 ``.pkl`` ``{'model': {name: array}, '__author__': ...}``, Detectron1 ``{'blobs': ...}``,
  MSRA ImageNet ``R-50.pkl``), so these need no unsafe switch.

The result is always ``{'model': {name: tensor}, **other entries}``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["read_checkpoint", "CheckpointReadError"]


class CheckpointReadError(ValueError):
    """The file is not a readable checkpoint: truncated, empty, or something else entirely."""

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file


def _torch_load(path: str, allow_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise pickle.UnpicklingError(
            f"Checkpoint '{path}' contains python objects that torch.load(weights_only=True) refuses to "
            f"unpickle ({first_line}). kiln's own checkpoints never need this. If you trust the file, "
            f"load it with allow_pickle=True (Checkpointer.load(path, allow_pickle=True))."
        ) from e


def _data_pickle(path: str, allow_pickle: bool) -> Any:
    from kiln.fileio.safe_pickle import UnsafePickleError, safe_load

    try:
        return safe_load(path)
    except UnsafePickleError:
        if not allow_pickle:
            raise
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")


def _unreadable(path: str, e: BaseException) -> CheckpointReadError:
    size = os.path.getsize(path)
    reason = " ".join(str(e).split())[:200] or type(e).__name__
    what = "is empty" if size == 0 else f"({size} bytes) cannot be read: {type(e).__name__}: {reason}"
    return CheckpointReadError(
        f"Checkpoint '{path}' {what}. It is truncated or not a checkpoint (an interrupted save or "
        "download?); save or download it again, or pick another file (kiln train --resume lists the "
        "checkpoints of a work_dir).")


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return torch.as_tensor(value.item())
    return value


def read_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load ``path`` into ``{'model': state_dict, **rest}`` on the CPU, whatever wrote it.

    Args:
        path: local file.
        allow_pickle: also unpickle arbitrary python objects (only for files you trust: this can run code).

    Raises:
        FileNotFoundError, pickle.UnpicklingError (objects that need ``allow_pickle``), TypeError/KeyError
        (the file is not a model checkpoint), each naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist.")
    try:
        if zipfile.is_zipfile(path):
            data = _torch_load(path, allow_pickle)
        else:
            data = _data_pickle(path, allow_pickle)
            if isinstance(data, int) and data == _TORCH_LEGACY_MAGIC:
                data = _torch_load(path, allow_pickle)
    except pickle.UnpicklingError as e:
        from kiln.fileio.safe_pickle import UnsafePickleError

        if isinstance(e, UnsafePickleError) or "contains python objects" in str(e):
            raise  # objects refused (data-only / weights_only): that message says what to do
        raise _unreadable(path, e) from e
    except (EOFError, RuntimeError, ValueError, IndexError, zipfile.BadZipFile, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise _unreadable(path, e) from e
    if not isinstance(data, Mapping):
        raise TypeError(f"Checkpoint '{path}' holds a {type(data).__name__}; expected a dict of state.")
    data = dict(data)
    for key in ("model", "state_dict", "blobs"):  # kiln/Detectron2, MMEngine/MMCV, Detectron1
        if isinstance(data.get(key), Mapping):
            model = data.pop(key)
            break
    else:
        if data and all(isinstance(v, (torch.Tensor, np.ndarray, np.generic)) for v in data.values()):
            model, data = data, {}
        else:
            raise KeyError(
                f"Checkpoint '{path}' has no 'model', 'state_dict' or 'blobs' entry "
                f"(keys: {sorted(data)[:10]}); it does not look like a model checkpoint."
            )
    out_model = type(model)() if isinstance(model, dict) else {}
    for k, v in model.items():
        out_model[k] = _as_tensor(v)
    metadata = getattr(model, "_metadata", None)
    if metadata is not None:
        out_model._metadata = metadata  # type: ignore[attr-defined]
    return {"model": out_model, **data}
