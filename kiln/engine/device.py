"""Where a run computes: one function decides the device, a few place the run's pieces on it.

Every entry point (``Runner(device=...)``, the config's ``device``, ``kiln train/test/infer --device``,
Detectron2's ``MODEL.DEVICE``) ends in :func:`resolve_device`, so the rules live in one place:

* nothing asked (``None``, ``''``, ``'auto'``): CUDA when this machine has it (the local rank's GPU
  under distributed training), else the CPU;
* ``'cuda'``: the local rank's GPU; ``'cuda:N'``: that GPU;
* ``'cpu'``: the CPU;
* CUDA asked for where there is none (or ``N`` out of range) is an error naming the value and the
  fix (``--device cpu``), never a quiet run on the CPU.

The runner then places what it owns (:func:`prepare_model`, :func:`follow_device`,
:func:`pin_loader`, :func:`make_batch_mover`); hooks that copy weights (EMA) copy them where the
model is. ``env_cfg`` (MMEngine) is applied by :func:`apply_env_cfg`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn

from kiln.structures import Boxes, ImageList, Instances

from .optim import AmpOptimWrapper

__all__ = [
    "resolve_device",
    "cuda_device_count",
    "module_device",
    "apply_env_cfg",
    "prepare_model",
    "follow_device",
    "pin_loader",
    "batch_to_device",
    "make_batch_mover",
    "SYNC_BN_IMPLEMENTATIONS",
]

logger = logging.getLogger(__name__)

_AUTO = (None, "", "auto")
_EXAMPLES = "'cpu', 'cuda' or 'cuda:N'"
#: ``sync_bn`` values kiln can honour (MMEngine also knows 'mmcv', which needs MMCV's CUDA ops).
SYNC_BN_IMPLEMENTATIONS = ("torch",)


def cuda_device_count() -> int:
    """CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _no_cuda_hint() -> str:
    built = torch.version.cuda
    why = (
        f"torch {torch.__version__} is built with CUDA {built} but finds no usable GPU"
        if built
        else f"torch {torch.__version__} is a CPU-only build"
    )
    return why


def resolve_device(
    requested: str | torch.device | None = None,
    local_rank: int = 0,
    *,
    cuda_count: int | None = None,
    source: str = "device",
) -> torch.device:
    """The device a run computes on, from what was asked for (see the module docstring).

    Args:
        requested: ``None``/``''``/``'auto'`` (default), ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or a
            ``torch.device``. The caller passes the most explicit value it has (a ``--device`` flag
            over the config's ``device``).
        local_rank: this process's rank on its machine; picks the GPU for ``None``/``'cuda'``.
        cuda_count: the number of visible CUDA devices (default: asks torch). Passing it makes the
            rules a pure function, which is how they are tested on machines without a GPU.
        source: how the value was given, for the error message (``'device'``, ``'MODEL.DEVICE'``).

    Raises:
        ValueError: an unknown device, or CUDA asked for where there is none or not that many.
    """
    count = cuda_device_count() if cuda_count is None else int(cuda_count)
    flag = source.startswith("--")
    named = f"{source} {requested}" if flag else f"{source}={requested!r}"
    use_cpu = "--device cpu" if flag else f"--device cpu ({source}='cpu' in the config)"
    rank = int(local_rank or 0)
    if isinstance(requested, str):
        requested = requested.strip()
    if requested in _AUTO:
        if count == 0:
            return torch.device("cpu")
        if rank >= count:
            raise ValueError(
                f"{source} is not set, so local rank {rank} would train on cuda:{rank}, but only "
                f"{count} CUDA device(s) are visible; start at most {count} process(es) per machine, or use "
                f"{use_cpu}."
            )
        return torch.device("cuda", rank)
    try:
        dev = requested if isinstance(requested, torch.device) else torch.device(str(requested))
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{named} is not a device; expected {_EXAMPLES} (or leave it unset: CUDA when available, else "
            f"the CPU)."
        ) from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"{named}: kiln runs on the CPU or on CUDA GPUs; expected {_EXAMPLES}.")
    index = rank if dev.index is None else dev.index
    if count == 0:
        raise ValueError(
            f"{named} asks for a CUDA GPU, but this machine has none ({_no_cuda_hint()}). Run on the CPU "
            f"with {use_cpu}, or on a machine with a GPU."
        )
    if index >= count:
        what = f"local rank {rank}'s GPU cuda:{index}" if dev.index is None else f"cuda:{index}"
        raise ValueError(
            f"{named} asks for {what}, but only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1}); pick one of those, or {use_cpu}."
        )
    return torch.device("cuda", index)


def module_device(module: nn.Module | None) -> torch.device | None:
    """The device of ``module``'s first parameter (or buffer); ``None`` when it has neither."""
    if module is None:
        return None
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return None


_ENV_KEYS = ("cudnn_benchmark", "mp_cfg", "dist_cfg")


def apply_env_cfg(env_cfg: Mapping[str, Any] | None) -> None:
    """Apply MMEngine's ``env_cfg`` to this process.

    Keys: ``cudnn_benchmark`` (``torch.backends.cudnn.benchmark``; deterministic runs keep it off,
    with a warning), ``mp_cfg=dict(mp_start_method=..., opencv_num_threads=...)`` and
    ``dist_cfg=dict(backend=...)`` (kiln's launcher picks the backend: NCCL when every worker has
    a GPU, else gloo; a different running backend is reported). Other keys are refused.
    """
    if not env_cfg:
        return
    if not isinstance(env_cfg, Mapping):
        raise TypeError(f"env_cfg must be a dict, e.g. dict(cudnn_benchmark=True); got {env_cfg!r}.")
    unknown = sorted(set(env_cfg) - set(_ENV_KEYS))
    if unknown:
        raise KeyError(
            f"env_cfg has keys kiln does not understand: {unknown}; supported: {list(_ENV_KEYS)}."
        )
    if "cudnn_benchmark" in env_cfg:
        bench = bool(env_cfg["cudnn_benchmark"])
        if bench and (torch.backends.cudnn.deterministic or torch.are_deterministic_algorithms_enabled()):
            logger.warning(
                "env_cfg.cudnn_benchmark=True is ignored: this run is deterministic (cuDNN benchmarking "
                "picks algorithms by timing, which is not reproducible)."
            )
            bench = False
        torch.backends.cudnn.benchmark = bench
    mp_cfg = dict(env_cfg.get("mp_cfg") or {})
    bad = sorted(set(mp_cfg) - {"mp_start_method", "opencv_num_threads"})
    if bad:
        raise KeyError(
            f"env_cfg.mp_cfg has unknown keys {bad}; supported: mp_start_method, opencv_num_threads."
        )
    method = mp_cfg.get("mp_start_method")
    if method is not None:
        import torch.multiprocessing as mp

        current = mp.get_start_method(allow_none=True)
        if current != method:
            if current is not None:
                logger.warning("env_cfg.mp_cfg: start method %r replaces %r.", method, current)
            mp.set_start_method(method, force=True)
    threads = mp_cfg.get("opencv_num_threads")
    if threads is not None:
        try:
            import cv2
        except ImportError:  # no OpenCV in this environment: it has no threads to limit
            logger.debug("env_cfg.mp_cfg.opencv_num_threads: OpenCV is not installed.")
        else:
            cv2.setNumThreads(int(threads))
    dist_cfg = dict(env_cfg.get("dist_cfg") or {})
    bad = sorted(set(dist_cfg) - {"backend"})
    if bad:
        raise KeyError(
            f"env_cfg.dist_cfg has keys kiln does not understand: {bad}; supported: backend (kiln's launcher "
            f"sets up the process group: kiln train --num-gpus N, or torchrun ... --launcher pytorch)."
        )
    backend = dist_cfg.get("backend")
    if backend is not None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_backend() != backend:
            logger.warning(
                "env_cfg.dist_cfg.backend=%r, but the process group runs %r (kiln's launcher uses nccl when "
                "every worker has a GPU, else gloo).", backend, dist.get_backend()
            )


def prepare_model(
    model: nn.Module,
    device: torch.device,
    *,
    sync_bn: str | None = None,
    channels_last: bool = False,
    distributed: bool = False,
) -> nn.Module:
    """Put ``model`` on ``device``: SyncBN conversion (distributed), ``.to(device)``, memory format.

    Parameters keep their identity (``Module.to`` moves their data), so an optimizer built on the
    model before still steps the same tensors. Returns the model (a new object only when the model
    itself is a batch-norm layer converted to SyncBN).

    Args:
        sync_bn: ``None`` or ``'torch'``: convert every ``BatchNorm*d`` to
            ``torch.nn.SyncBatchNorm`` under distributed training (a single process computes
            global batch statistics already, so nothing is converted there).
        channels_last: store 4-d weights in ``torch.channels_last`` (NHWC) order; convolutions then
            produce NHWC activations, which tensor cores prefer for mixed precision.
    """
    if sync_bn not in (None, False):
        if sync_bn not in SYNC_BN_IMPLEMENTATIONS:
            raise ValueError(
                f"sync_bn={sync_bn!r} is not an implementation kiln has; use sync_bn='torch' "
                f"(torch.nn.SyncBatchNorm) or leave it unset."
            )
        if distributed:
            if device.type != "cuda":
                raise ValueError(
                    f"sync_bn={sync_bn!r} under distributed training needs CUDA devices "
                    f"(torch.nn.SyncBatchNorm does not run on {device.type}); drop sync_bn or train on GPUs."
                )
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            logger.info("sync_bn='torch': batch norm layers converted to torch.nn.SyncBatchNorm.")
        else:
            logger.info("sync_bn=%r: a single process already normalizes over its whole batch; "
                        "batch norm layers are left as they are.", sync_bn)
    if device.type == "cuda":
        # The current device is where torch.cuda.* calls (memory statistics, new tensors) go.
        torch.cuda.set_device(device)
    with _params_keep_identity(model, device):
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def _params_keep_identity(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Make ``Module.to(device)`` keep the ``Parameter`` objects, so an earlier optimizer stays valid.

    ``Runner.from_cfg`` builds the optimizer before the runner places the model. Plain ``.to``
    keeps the objects (it replaces their ``.data``) when source and target tensors have compatible
    implementations, as CPU and CUDA tensors do; otherwise (e.g. the ``meta`` device) torch's swap
    mode is used, which keeps them always but refuses parameters with weak references or live
    autograd graphs, so it is used only where it is needed.
    """
    target = {}
    needs_swap = False
    for p in model.parameters():
        if p.dtype not in target:
            target[p.dtype] = torch.empty(0, dtype=p.dtype, device=device)
        # (the check nn.Module._apply itself makes to choose `.data =` over new objects)
        if not torch._has_compatible_shallow_copy_type(p, target[p.dtype]):
            needs_swap = True
            break
    if not needs_swap:
        yield
        return
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)


def follow_device(optim_wrapper: Any, device: torch.device) -> None:
    """Make an AMP optim wrapper's autocast and loss scaler use ``device`` (it may predate placement)."""
    if isinstance(optim_wrapper, AmpOptimWrapper):
        optim_wrapper.set_device_type(device.type)


def pin_loader(loader: Any, device: torch.device) -> None:
    """Turn on pinned (page-locked) host memory in a kiln loader when the run is on CUDA.

    Batches in pinned memory copy to the GPU asynchronously (the ``non_blocking=True`` copies of
    the runner and the detectors). Loaders that are not kiln's keep their own setting.
    """
    if device.type != "cuda":
        return
    from kiln.data.build import ResumableLoader

    if isinstance(loader, ResumableLoader):
        loader.pin_memory = True


def batch_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """``batch`` with its tensors on ``device`` (copied ``non_blocking``), containers rebuilt.

    Walks dicts, lists and tuples (named tuples too); kiln structures (``Instances``, ``Boxes``,
    ``ImageList``) move with their ``.to``; anything else (numbers, strings, numpy arrays, metas) is
    left as it is. With ``channels_last``, 4-d floating-point tensors (image batches) are made NHWC.
    """
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        moved = {k: batch_to_device(v, device, channels_last) for k, v in batch.items()}
        return moved if type(batch) is dict else _rebuild(batch, moved)
    if isinstance(batch, list):
        return [batch_to_device(v, device, channels_last) for v in batch]
    if isinstance(batch, tuple):
        items = [batch_to_device(v, device, channels_last) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    if isinstance(batch, (Instances, Boxes, ImageList)):
        return batch.to(device)
    return batch


def _rebuild(mapping: Mapping, moved: dict) -> Any:
    try:
        return type(mapping)(moved)
    except TypeError:  # a Mapping type that cannot be built from a dict: a plain dict says the same
        return moved


def make_batch_mover(device: torch.device, channels_last: bool = False) -> Callable[[Any], Any] | None:
    """The function the runner applies to each batch before the model, or ``None`` for none.

    On the CPU without ``channels_last`` batches are already where they belong, so the training
    loop pays nothing.
    """
    if device.type == "cpu" and not channels_last:
        return None

    def move(batch: Any) -> Any:
        return batch_to_device(batch, device, channels_last)

    return move
