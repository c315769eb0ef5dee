"""Distributed helpers that also work without an initialized process group (then world size is 1).

Rank, world size, main process and the shared seed are :mod:`kiln.utils.dist`'s (re-exported here);
this module adds the collectives and the per-machine process group.

Rank/world size come from ``torch.distributed`` when it is initialized; the local rank/size come from
the per-machine process group that :func:`kiln.engine.launch.launch` (or ``init_from_env``) creates, or
from torchrun's ``LOCAL_RANK``/``LOCAL_WORLD_SIZE``.
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from kiln.utils.dist import (
    get_dist_info,
    get_rank,
    get_world_size,
    is_dist_avail_and_initialized,
    is_main_process,
    shared_random_seed,
)

__all__ = [
    "is_dist_avail_and_initialized",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "get_local_size",
    "is_main_process",
    "get_dist_info",
    "master_only",
    "synchronize",
    "all_gather",
    "gather",
    "broadcast_object",
    "reduce_dict",
    "all_reduce_mean",
    "shared_random_seed",
    "create_local_process_group",
    "get_local_process_group",
    "forget_process_groups",
]

_LOCAL_PROCESS_GROUP: Any = None
_LOCAL_SIZE: int | None = None


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create one process group per machine and remember this machine's. Collective: every rank calls it.

    Assumes ranks are laid out machine by machine (ranks ``[m*n, (m+1)*n)`` on machine ``m``).
    """
    global _LOCAL_PROCESS_GROUP, _LOCAL_SIZE
    world_size = get_world_size()
    if world_size % num_workers_per_machine != 0:
        raise ValueError(
            f"create_local_process_group({num_workers_per_machine}): world size {world_size} is not a "
            f"multiple of the workers per machine."
        )
    machine_rank = get_rank() // num_workers_per_machine
    for m in range(world_size // num_workers_per_machine):
        ranks = list(range(m * num_workers_per_machine, (m + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)
        if m == machine_rank:
            _LOCAL_PROCESS_GROUP = group
    _LOCAL_SIZE = num_workers_per_machine


def forget_process_groups() -> None:
    """Drop cached sub-groups (call after ``destroy_process_group`` before initializing a new one).

    Also runs at exit, so cached groups are released while the interpreter is still whole.
    """
    global _LOCAL_PROCESS_GROUP, _LOCAL_SIZE
    _LOCAL_PROCESS_GROUP = None
    _LOCAL_SIZE = None
    _object_group.cache_clear()


atexit.register(forget_process_groups)


def get_local_process_group() -> Any:
    """This machine's process group (``None`` unless :func:`create_local_process_group` ran)."""
    return _LOCAL_PROCESS_GROUP


def get_local_rank() -> int:
    """Rank of this process on its machine (0 when not distributed)."""
    if not is_dist_avail_and_initialized():
        return 0
    if _LOCAL_PROCESS_GROUP is not None:
        return dist.get_rank(group=_LOCAL_PROCESS_GROUP)
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return get_rank()


def get_local_size() -> int:
    """Number of processes on this machine (1 when not distributed)."""
    if not is_dist_avail_and_initialized():
        return 1
    if _LOCAL_SIZE is not None:
        return _LOCAL_SIZE
    if "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return get_world_size()


def master_only(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``func`` only on the main process (returns ``None`` elsewhere)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_main_process():
            return func(*args, **kwargs)
        return None

    return wrapper


def synchronize() -> None:
    """Barrier across all processes; a no-op when not distributed."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        # Without device_ids NCCL may pick device 0 on every rank and hang.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@functools.lru_cache
def _object_group() -> Any:
    """A gloo group for pickled-object collectives (NCCL would need them on GPU); ``None`` (the
    default group) otherwise.

    Never the default group object itself: a cached reference would keep a gloo process group alive
    after ``dist.destroy_process_group()`` until interpreter shutdown, where destroying it can abort
    the process ("terminate called without an active exception").
    """
    if dist.get_backend() == dist.Backend.NCCL:
        return dist.new_group(backend="gloo")
    return None


def all_gather(data: Any, group: Any = None) -> list[Any]:
    """Gather a picklable object from every rank; returns the list (index = rank) on every rank."""
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _object_group()
    size = dist.get_world_size(group)
    if size == 1:
        return [data]
    output: list[Any] = [None] * size
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: Any = None) -> list[Any]:
    """Gather a picklable object from every rank onto rank ``dst`` (global rank).

    Returns the list (index = rank) on ``dst`` and ``[]`` on the other ranks.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _object_group()
    if dist.get_world_size(group) == 1:
        return [data]
    if dist.get_rank() == dst:
        output: list[Any] = [None] * dist.get_world_size(group)
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def broadcast_object(data: Any, src: int = 0, group: Any = None) -> Any:
    """Return rank ``src``'s ``data`` on every rank."""
    if get_world_size() == 1:
        return data
    if group is None:
        group = _object_group()
    box = [data]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def reduce_dict(input_dict: Mapping[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """Sum (or average) a dict of scalar tensors over all ranks; every rank gets the result.

    Every rank must pass the same keys. Used to log losses averaged over the whole global batch.
    """
    world_size = get_world_size()
    if world_size < 2:
        return dict(input_dict)
    names = sorted(input_dict)
    with torch.no_grad():
        values = torch.stack([torch.as_tensor(input_dict[k]).detach().reshape(()).float() for k in names])
        dist.all_reduce(values)
        if average:
            values /= world_size
    return dict(zip(names, values.unbind(0)))


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a new tensor; the input is left unchanged)."""
    if get_world_size() < 2:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / get_world_size()
