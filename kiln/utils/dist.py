"""Who am I in a distributed run: rank, world size, main process, a seed shared by all ranks.

The one place that asks ``torch.distributed``; it works without an initialized process group
(rank 0 of 1). :mod:`kiln.engine.comm` adds the collectives and the per-machine group on top;
the data and evaluation layers, which must not import the engine, use this module directly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "is_dist_avail_and_initialized",
    "get_world_size",
    "get_rank",
    "get_dist_info",
    "is_main_process",
    "shared_random_seed",
]


def is_dist_avail_and_initialized() -> bool:
    """Whether torch.distributed is built in and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def get_dist_info() -> tuple[int, int]:
    """``(rank, world_size)``, MMCV's spelling."""
    return get_rank(), get_world_size()


def is_main_process() -> bool:
    """Whether this is global rank 0 (the process that writes files and logs)."""
    return get_rank() == 0


def shared_random_seed() -> int:
    """A random int in [0, 2**31) that is the same on all ranks: rank 0 draws it from numpy's global
    RNG (so a seeded run draws the same one) and broadcasts it. Every rank must call it.
    """
    import numpy as np

    seed = int(np.random.randint(2**31))
    if get_world_size() > 1:
        t = torch.tensor([seed], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, src=0)
        seed = int(t.item())
    return seed
