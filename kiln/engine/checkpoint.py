"""Checkpointer: atomic, weights_only-safe checkpoints of a model and any other stateful objects.

A save writes ``{name}.pth`` to a temporary file in the same directory, flushes and fsyncs it, renames it
into place, and only then rewrites the ``last_checkpoint`` pointer (atomically too). A process killed at
any moment leaves the previous checkpoint and pointer intact.

Loading uses ``torch.load(weights_only=True)``: a checkpoint can only contain tensors and plain python
types, so loading an untrusted file cannot run code. Everything kiln stores obeys that; loading a file
that holds other pickled objects needs an explicit ``allow_pickle=True``.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from . import comm
from .rng import collect_rng_states_all_ranks, get_rng_states, set_rng_states

__all__ = [
    "find_resume_checkpoint",
    "Checkpointer",
    "PeriodicCheckpointer",
    "IncompatibleKeys",
    "atomic_torch_save",
    "load_checkpoint_file",
    "strip_prefix_if_present",
    "get_rng_states",
    "set_rng_states",
    "collect_rng_states_all_ranks",
    "to_weights_only_safe",
    "CheckpointWriteError",
    "ResumeMismatchError",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"


def find_resume_checkpoint(work_dir: str | None) -> str | None:
    """The checkpoint a ``resume=True`` / ``--resume`` run continues from, or ``None`` for a fresh start.

    ``work_dir/last_checkpoint`` names it. A work dir with no pointer and no ``*.pth`` file is a fresh
    start. Anything else that cannot be resumed (the pointer is unreadable or empty, names a file that is
    gone, or is missing while checkpoints are present) raises ``FileNotFoundError`` listing the
    checkpoints present: starting over would overwrite the earlier run's checkpoints.
    """
    if not work_dir:
        return None
    pointer = os.path.join(work_dir, LAST_CHECKPOINT_FILE)
    present = sorted(glob.glob(os.path.join(glob.escape(work_dir), "*.pth")), key=os.path.getmtime)
    listing = ", ".join(os.path.basename(p) for p in present[-8:]) or "none"
    fix = (f"Resume from one of them with --resume-from {work_dir}/<file>.pth (resume='<path>' in a "
           f"config), or start a new run in another --work-dir.")
    if not os.path.exists(pointer):
        if present:
            raise FileNotFoundError(f"resume: {work_dir} has checkpoints ({listing}) but no "
                                    f"{LAST_CHECKPOINT_FILE} pointer naming the one to continue from. {fix}")
        return None
    try:
        with open(pointer, encoding="utf-8") as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileNotFoundError(f"resume: cannot read {pointer} ({type(exc).__name__}: {exc}); checkpoints "
                                f"present: {listing}. {fix}") from None
    if not name:
        raise FileNotFoundError(f"resume: {pointer} is empty; checkpoints present: {listing}. {fix}")
    path = name if os.path.isabs(name) else os.path.join(work_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume: {pointer} names {name!r}, which does not exist; checkpoints "
                                f"present: {listing}. {fix}")
    return path


class IncompatibleKeys(NamedTuple):
    """What did not load cleanly into the model."""

    missing_keys: list[str]
    unexpected_keys: list[str]
    # (key, shape in checkpoint, shape in model) for parameters skipped because the shapes differ.
    incorrect_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]


# ------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class CheckpointWriteError(OSError):
    """A checkpoint (or its pointer) could not be written: disk full, quota, permissions, a read-only or
    vanished directory. The message names the file, the OS error and the free space left; the previous
    checkpoint and ``last_checkpoint`` are untouched (writes go to a temp file renamed into place)."""


class ResumeMismatchError(ValueError):
    """``resume`` from a checkpoint written by a different model: refused at load time, before the
    optimizer state (shaped for the old parameters) could fail at the first step."""


def _resume_mismatch(path: str, report: Any) -> ResumeMismatchError:
    parts, examples = [], []
    if report.shape_mismatch:
        parts.append(f"{len(report.shape_mismatch)} parameters of another shape")
        key, ck, mo = report.shape_mismatch[0]
        examples.append(f"{key}: checkpoint {tuple(ck)} vs model {tuple(mo)}")
    if report.missing:
        parts.append(f"{len(report.missing)} model parameters absent from the checkpoint")
        examples.append(f"missing {report.missing[0]}")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} checkpoint entries the model does not have")
        examples.append(f"unexpected {report.unexpected[0]}")
    return ResumeMismatchError(
        f"cannot resume from '{path}': it was written by a different model ({', '.join(parts)}; e.g. "
        f"{'; '.join(examples)}). Resuming continues the same run: use the config it ran with (saved "
        f"next to it as config.py / config.yaml), or start a new run from these weights with --load-from "
        f"{path} (load_from / MODEL.WEIGHTS) and no --resume, which loads what fits and reports the rest.")


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: torch.save reports a failed ``write()`` of the file object as a
    RuntimeError ("enforce fail at inline_container.cc") whose context is the real OSError."""
    from kiln.utils.misc import exception_in_chain

    return exception_in_chain(exc, OSError)


def _write_error(path: str, exc: BaseException) -> CheckpointWriteError:
    import shutil

    os_error = _os_error_in(exc)
    reason = (f"[Errno {os_error.errno}] {os_error.strerror or os_error}" if os_error is not None
              else f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(directory).free / 2**20:.1f} MiB free in {directory}"
    except OSError:
        free = f"{directory} cannot be inspected"
    err = CheckpointWriteError(
        f"cannot write checkpoint '{path}': {reason} ({free}). The previous checkpoint and "
        f"'{LAST_CHECKPOINT_FILE}' are unchanged. Free space there (or keep fewer checkpoints: "
        f"default_hooks.checkpoint.max_keep_ckpts / checkpoint_config.max_keep_ckpts), or choose another "
        f"--work-dir, then resume with --resume.")
    err.path, err.os_error = path, os_error  # (not errno/filename: OSError.__str__ would reformat)
    return err


def _atomic_write(path: str, write: Any) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync it, then rename it over ``path``.

    A failed write (e.g. a full disk) removes the temp file and raises :class:`CheckpointWriteError`."""
    try:
        _atomic_write_unchecked(path, write)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if isinstance(exc, CheckpointWriteError) or _os_error_in(exc) is None \
                and "inline_container" not in str(exc):
            raise
        raise _write_error(path, exc) from exc


def _atomic_write_unchecked(path: str, write: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the checkpoint the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


_PLAIN_LEAVES = (bool, int, float, complex, str, bytes)
_SAFE_LEAVES = (str, bytes, bool, int, float, complex, type(None), torch.Tensor, torch.Size,
                torch.dtype, torch.device)


def to_weights_only_safe(obj: Any, where: str = "checkpoint") -> Any:
    """Return ``obj`` with numpy values turned into lists/numbers; raise if anything else would need pickle.

    Raises:
        TypeError: naming the key path of the first object ``torch.load(weights_only=True)`` would reject.
    """
    if isinstance(obj, _PLAIN_LEAVES) and type(obj) not in _PLAIN_LEAVES:
        # A subclass of a plain type (torch.__version__ is a str subclass, IntEnum an int one) would need
        # pickle to load; store the plain value instead.
        return next(base for base in type(obj).__mro__ if base in _PLAIN_LEAVES)(obj)
    if isinstance(obj, _SAFE_LEAVES):
        return obj
    if isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, to_weights_only_safe(v, f"{where}.{k}")) for k, v in obj.items())
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:  # module versions that load_state_dict hooks rely on (e.g. BatchNorm)
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {k: to_weights_only_safe(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = [to_weights_only_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return type(obj)(items) if not hasattr(obj, "_fields") else list(items)
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which torch.load(weights_only=True) "
        f"cannot load. Store tensors and plain python types only (convert it, or store its state_dict())."
    )


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path`` (temp file + fsync + rename)."""
    _atomic_write(path, lambda f: torch.save(obj, f))


# ------------------------------------------------------------------------------------------- reading
def load_checkpoint_file(path: str, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load a checkpoint file into a dict with (at least) a ``model`` state dict, on CPU.

    The format is told from the content (:func:`kiln.checkpoint_convert.read_checkpoint`): kiln/Detectron2
    checkpoints (``{'model': ...}``), MMEngine ones (``{'state_dict': ..., 'meta': ...}``), bare state
    dicts, and pickles of numpy arrays (Detectron2 ``.pkl``, Caffe2/MSRA ``R-50.pkl``, Detectron1
    ``{'blobs': ...}``), which are read with a data-only unpickler and need no ``allow_pickle``.

    Args:
        path: local file path, or a URL / ``detectron2://`` / ``torchvision://`` / ``open-mmlab://`` name
            (downloaded once into the cache, :mod:`kiln.model_zoo.download`).
        allow_pickle: also unpickle other python objects (``weights_only=False``). Only for files you
            trust: unpickling can run code.
    """
    from kiln.checkpoint_convert import read_checkpoint
    from kiln.model_zoo.download import is_remote, resolve_weights

    if is_remote(path):  # load_from / MODEL.WEIGHTS naming published weights: the download cache
        path = str(resolve_weights(path))
    return read_checkpoint(path, allow_pickle=allow_pickle)


def strip_prefix_if_present(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Drop ``prefix`` from every key if all keys start with it (e.g. DDP's ``module.``)."""
    keys = list(state_dict)
    if not keys or not all(k.startswith(prefix) for k in keys):
        return state_dict
    out = collections.OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
            (k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in metadata.items()
        )
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, (DataParallel, DistributedDataParallel)):
        model = model.module
    return model


def _group_keys(keys: Iterable[str]) -> list[str]:
    """``['a.b.w', 'a.b.bias', 'c']`` -> ``['a.b.{bias,w}', 'c']`` so long key lists stay readable."""
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for k in keys:
        head, _, leaf = k.rpartition(".")
        groups[head].append(leaf)
    out = []
    for head, leaves in groups.items():
        leaves = sorted(leaves)
        body = leaves[0] if len(leaves) == 1 else "{" + ",".join(leaves) + "}"
        out.append(f"{head}.{body}" if head else body)
    return sorted(out)


def format_incompatible_keys(incompatible: IncompatibleKeys, source: str = "checkpoint") -> str:
    """A table of missing, unexpected and shape-mismatched keys ('' when everything matched)."""
    rows: list[tuple[str, str, str]] = []
    for key, ckpt_shape, model_shape in incompatible.incorrect_shapes:
        shapes = f"checkpoint {tuple(ckpt_shape)} vs model {tuple(model_shape)}"
        rows.append(("shape mismatch (skipped)", key, shapes))
    for key in _group_keys(incompatible.missing_keys):
        rows.append(("missing in checkpoint", key, "keeps its initial value"))
    for key in _group_keys(incompatible.unexpected_keys):
        rows.append(("not in model", key, "ignored"))
    if not rows:
        return ""
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"Loading {source} into the model: {len(rows)} key group(s) did not match:"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Save and load a model plus other objects with ``state_dict()``/``load_state_dict()``.

    Args:
        model: the model (DDP/DataParallel wrappers are unwrapped: checkpoints hold the plain keys).
        save_dir: directory for ``{name}.pth`` files and the ``last_checkpoint`` pointer.
        save_to_disk: whether :meth:`save` writes; default: only on the main process.
        allow_pickle: default for :meth:`load` (see :func:`load_checkpoint_file`).
        checkpointables: other objects to save/load, e.g. ``optimizer=opt, scheduler=sched``.

    Example::

        ckpt = Checkpointer(model, 'work_dir', optimizer=opt)
        ckpt.save('model_0000999', iteration=999)
        extra = ckpt.resume_or_load('weights.pth', resume=True)   # {'iteration': 999} when resuming
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool | None = None,
        allow_pickle: bool = False,
        **checkpointables: Any,
    ) -> None:
        self.model = _unwrap(model)
        self.save_dir = os.fspath(save_dir)
        self._save_to_disk = save_to_disk
        self.allow_pickle = allow_pickle
        self.checkpointables: dict[str, Any] = {}
        for k, v in checkpointables.items():
            self.add_checkpointable(k, v)

    @property
    def save_to_disk(self) -> bool:
        """Whether :meth:`save` writes; by default decided when saving (main process only), so a
        checkpointer built before the process group exists still behaves correctly."""
        return comm.is_main_process() if self._save_to_disk is None else self._save_to_disk

    @save_to_disk.setter
    def save_to_disk(self, value: bool | None) -> None:
        self._save_to_disk = value

    def add_checkpointable(self, key: str, obj: Any) -> None:
        """Also save/load ``obj`` (anything with ``state_dict``/``load_state_dict``) under ``key``."""
        if key == "model" or key in self.checkpointables:
            raise KeyError(f"Checkpointer: key '{key}' is already used; pick another name.")
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(
                f"Checkpointer: '{key}' ({type(obj).__name__}) has no state_dict()/load_state_dict(); "
                f"only objects with both can be checkpointed."
            )
        self.checkpointables[key] = obj

    # ---------------------------------------------------------------- save
    def save(self, name: str, **extra: Any) -> str | None:
        """Write ``{save_dir}/{name}.pth`` atomically and point ``last_checkpoint`` at it.

        Args:
            name: file name without ``.pth``.
            extra: more entries (iteration, meta, RNG states...): tensors and plain python types;
                numpy values are converted to lists.

        Returns:
            The path written, or ``None`` when this process does not save (``save_to_disk=False``).
        """
        if not self.save_to_disk:
            return None
        if not self.save_dir:
            raise ValueError("Checkpointer.save: save_dir is empty; pass save_dir= to write checkpoints.")
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        for key, value in extra.items():
            if key in data:
                raise KeyError(f"Checkpointer.save: extra key '{key}' collides with a checkpointable.")
            data[key] = value
        data = to_weights_only_safe(data, where=f"checkpoint '{name}'")
        path = os.path.join(self.save_dir, f"{name}.pth")
        atomic_torch_save(data, path)
        logger.info("Saved checkpoint to %s", path)
        self.tag_last_checkpoint(os.path.basename(path))
        return path

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically point ``last_checkpoint`` at a file in ``save_dir``."""
        if not self.save_to_disk:
            return
        text = last_filename_basename.encode("utf-8")
        _atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT_FILE), lambda f: f.write(text))

    # ---------------------------------------------------------------- find
    def has_checkpoint(self) -> bool:
        """Whether ``save_dir`` has a ``last_checkpoint`` pointer naming an existing file."""
        path = self.get_checkpoint_file()
        return bool(path) and os.path.isfile(path)

    def get_checkpoint_file(self) -> str:
        """The file ``last_checkpoint`` points at ('' when there is no pointer or no ``save_dir``)."""
        if not self.save_dir:  # never pick up a stray pointer from the current directory
            return ""
        pointer = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        try:
            with open(pointer, encoding="utf-8") as f:
                name = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, name) if name else ""

    def get_all_checkpoint_files(self) -> list[str]:
        """Every ``*.pth`` in ``save_dir``, oldest first (by modification time)."""
        if not self.save_dir:
            return []
        files = [p for p in glob.glob(os.path.join(glob.escape(self.save_dir), "*.pth")) if os.path.isfile(p)]
        return sorted(files, key=lambda p: (os.path.getmtime(p), p))

    # ---------------------------------------------------------------- load
    def load(
        self,
        path: str | None,
        checkpointables: list[str] | None = None,
        *,
        allow_pickle: bool | None = None,
        weights_only: bool | None = None,
        strict_model: bool = False,
    ) -> dict[str, Any]:
        """Load ``path`` into the model and the named checkpointables (default: all of them).

        Shape-mismatched parameters are skipped and reported with missing/unexpected keys in one table;
        with ``strict_model=True`` (resuming) any mismatch is a :class:`ResumeMismatchError` instead and
        nothing is loaded.

        Args:
            path: checkpoint file; empty/``None`` leaves everything as is (training from scratch).
            checkpointables: keys to load besides the model; ``[]`` loads the model only.
            allow_pickle: trust the file and load with ``weights_only=False``.
            weights_only: the opposite spelling of ``allow_pickle`` (as in ``torch.load``).

        Returns:
            The entries of the file that were not loaded into anything (iteration, meta, ...).
        """
        if not path:
            logger.info("No checkpoint given; the model keeps its initialization.")
            return {}
        if weights_only is not None:
            allow_pickle = not weights_only
        if allow_pickle is None:
            allow_pickle = self.allow_pickle
        logger.info("Loading checkpoint from %s", path)
        checkpoint = load_checkpoint_file(path, allow_pickle=allow_pickle)
        incompatible = self._load_model(checkpoint.pop("model"), source=f"'{path}'",
                                        strict=path if strict_model else None)
        report = self.last_load_report
        if any(incompatible):
            logger.warning(report.format())
        elif not report.clean:
            logger.info(report.format())
        self.last_incompatible_keys = incompatible
        keys = list(self.checkpointables) if checkpointables is None else checkpointables
        for key in keys:
            if key not in self.checkpointables:
                raise KeyError(
                    f"Checkpointer.load: '{key}' is not a checkpointable; "
                    f"known: {sorted(self.checkpointables)}."
                )
            if key in checkpoint:
                logger.info("Loading %s from %s", key, path)
                try:
                    self.checkpointables[key].load_state_dict(checkpoint.pop(key))
                except Exception as e:
                    raise RuntimeError(
                        f"Checkpointer.load: the '{key}' state in '{path}' does not fit "
                        f"{type(self.checkpointables[key]).__name__}: {e}. Was it saved from a different "
                        f"setup? To take only the weights, use load(path, checkpointables=[]) (load_from)."
                    ) from e
            else:
                logger.warning("Checkpoint '%s' has no '%s' state; it keeps its current state.", path, key)
        return checkpoint

    def _load_model(self, state_dict: Mapping[str, Any], source: str = "checkpoint",
                    strict: str | None = None) -> IncompatibleKeys:
        """Load ``state_dict`` (any publisher's layout, converted and matched to this model's names);
        ``strict`` (the checkpoint path) refuses any mismatch before loading anything."""
        from kiln.checkpoint_convert import convert_for_model

        aligned, report = convert_for_model(state_dict, self.model.state_dict(), source=source,
                                            model=self.model)
        if strict and (report.missing or report.unexpected or report.shape_mismatch):
            raise _resume_mismatch(strict, report)
        self.model.load_state_dict(aligned, strict=False)
        self.last_load_report = report
        return IncompatibleKeys(
            missing_keys=list(report.missing),
            unexpected_keys=list(report.unexpected),
            incorrect_shapes=list(report.shape_mismatch),
        )

    def resume_or_load(self, path: str | None, *, resume: bool = True) -> dict[str, Any]:
        """Resume from ``last_checkpoint`` when ``resume`` and one exists; else load only model weights
        from ``path`` (the ``load_from`` case: optimizer etc. start fresh)."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])


class PeriodicCheckpointer:
    """Save every ``period`` iterations and at the last one, keeping at most ``max_to_keep`` periodic files.

    Detectron2's ``PeriodicCheckpointer``, and the saver :class:`~kiln.engine.hooks.CheckpointHook`
    composes (there, the hook's period decides when, and :meth:`save_rotating` names and prunes).

    Args:
        checkpointer: what saves: a :class:`Checkpointer` or any object with ``save(name, **extra)``
            (returning the path, ``None`` off the main process) and ``get_checkpoint_file()``.
        period: iterations between saves in :meth:`step` (``None``: only explicit saves).
        max_iter: total iterations; the last one saves ``{file_prefix}_final``.
        max_to_keep: how many rotating checkpoints to keep (older ones are deleted; ``None``: all).
        file_prefix: file name prefix; files are ``{prefix}_{iteration:07d}.pth``.
    """

    def __init__(
        self,
        checkpointer: Any,
        period: int | None = None,
        max_iter: int | None = None,
        max_to_keep: int | None = None,
        file_prefix: str = "model",
    ) -> None:
        if period is not None and period < 1:
            raise ValueError(f"PeriodicCheckpointer(period={period}): period must be >= 1.")
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"PeriodicCheckpointer(max_to_keep={max_to_keep}): use None or a value >= 1.")
        self.checkpointer = checkpointer
        self.period = None if period is None else int(period)
        self.max_iter = max_iter
        self.max_to_keep = max_to_keep
        self.file_prefix = file_prefix
        self.recent: list[str] = []

    def step(self, iteration: int, **extra: Any) -> str | None:
        """Call after iteration ``iteration`` (0-based); saves when due. Returns the path written."""
        iteration = int(iteration)
        extra = {"iteration": iteration, **extra}
        path = None
        if self.period is not None and (iteration + 1) % self.period == 0:
            path = self.save_rotating(f"{self.file_prefix}_{iteration:07d}", **extra)
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            path = self.checkpointer.save(f"{self.file_prefix}_final", **extra)
        return path

    def save_rotating(self, name: str, **extra: Any) -> str | None:
        """Save ``name`` now and count it among the kept files, deleting the oldest beyond ``max_to_keep``."""
        path = self.checkpointer.save(name, **extra)
        if path is None:  # not the main process
            return None
        if path in self.recent:
            self.recent.remove(path)
        self.recent.append(path)
        if self.max_to_keep is not None:
            last = self.checkpointer.get_checkpoint_file()
            while len(self.recent) > self.max_to_keep:
                old = self.recent.pop(0)
                if old != last and os.path.exists(old):
                    os.remove(old)
        return path

    def save(self, name: str, **extra: Any) -> str | None:
        """Save ``name`` now through the wrapped checkpointer (not rotated)."""
        return self.checkpointer.save(name, **extra)

    def state_dict(self) -> dict:
        """The kept files (so the rotation survives a resume)."""
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (files deleted meanwhile are forgotten)."""
        self.recent = [p for p in state.get("recent", []) if os.path.exists(p)]
