"""Start distributed training: spawn workers (``launch``) or join torchrun's (``init_from_env``).

Example::

    def main(cfg_path):
        ...  # comm.get_rank() etc. work here

    if __name__ == '__main__':
        launch(main, num_gpus_per_machine=2, dist_url='auto', args=('cfg.py',))

Without CUDA, ``num_gpus_per_machine`` is the number of CPU worker processes and the backend is gloo.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import comm

__all__ = ["DEFAULT_TIMEOUT", "launch", "init_from_env", "leave_process_group", "default_backend",
           "find_free_port"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def find_free_port() -> int:
    """A TCP port that is free on this machine right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_backend(num_workers_per_machine: int = 1) -> str:
    """``'nccl'`` when there is a CUDA device for every local worker, else ``'gloo'``."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= num_workers_per_machine:
        return "nccl"
    return "gloo"


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = "auto",
    args: tuple = (),
    timeout: datetime.timedelta = DEFAULT_TIMEOUT,
    backend: str | None = None,
) -> None:
    """Run ``main_func(*args)`` on ``num_gpus_per_machine * num_machines`` processes.

    With a world size of 1 it simply calls ``main_func(*args)`` in this process. Otherwise it spawns
    ``num_gpus_per_machine`` workers here (start method ``spawn``), each joining the process group
    with global rank ``machine_rank * num_gpus_per_machine + local_rank`` and, on CUDA, bound to
    device ``local_rank``. An exception in any worker is re-raised here.

    Args:
        main_func: a module-level (picklable) function.
        num_gpus_per_machine: workers on this machine (CPU processes when there is no CUDA).
        num_machines: machines taking part.
        machine_rank: this machine's index, 0 .. num_machines-1.
        dist_url: rendezvous, e.g. ``tcp://10.0.0.1:29500`` or ``file:///shared/f``; ``'auto'`` picks a
            free local port (single machine only).
        args: positional arguments for ``main_func``.
        timeout: process-group timeout.
        backend: ``'gloo'`` or ``'nccl'``; default :func:`default_backend`.
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(
            f"launch: num_gpus_per_machine={num_gpus_per_machine} and num_machines={num_machines} must both "
            f"be >= 1."
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"launch: machine_rank={machine_rank} must be in [0, {num_machines}).")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return
    try:
        pickle.dumps((main_func, args))
    except Exception as e:
        raise TypeError(
            f"launch: main_func and args must be picklable, because spawned workers receive them by "
            f"pickling ({type(e).__name__}: {e}). Use a module-level function (not a lambda, closure or "
            f"method of a local class) and plain arguments."
        ) from e
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError(
                "launch: dist_url='auto' only works on one machine; with num_machines > 1 pass the "
                "address of machine 0, e.g. dist_url='tcp://10.0.0.1:29500'."
            )
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("launch: file:// rendezvous across machines needs a shared filesystem; "
                       "tcp:// is safer.")
    if backend is None:
        backend = default_backend(num_gpus_per_machine)
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout, backend),
        daemon=False,
        start_method="spawn",
    )


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: datetime.timedelta,
    backend: str,
) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    # Code that reads torchrun's variables (samplers, loggers) sees the same picture as under torchrun.
    os.environ.update(
        RANK=str(global_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(num_gpus_per_machine),
    )
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"launch: local rank {local_rank} has no CUDA device ({torch.cuda.device_count()} visible); "
                f"lower num_gpus_per_machine or pass backend='gloo'."
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
        )
    except Exception as e:
        raise RuntimeError(
            f"launch: worker {global_rank} could not join the process group at {dist_url}: {e}"
        ) from e
    try:
        comm.create_local_process_group(num_gpus_per_machine)
        comm.synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()
        comm.forget_process_groups()


def leave_process_group() -> None:
    """Destroy the default process group and kiln's cached sub-groups (no-op when none is active).

    No barrier: a rank that leaves because of an error must not wait for ranks still training.
    """
    comm.forget_process_groups()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def init_from_env(
    backend: str | None = None, timeout: datetime.timedelta = DEFAULT_TIMEOUT
) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (``kiln train --launcher pytorch``).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``;
    binds the CUDA device ``LOCAL_RANK`` when using nccl and creates the per-machine group.

    Returns:
        ``(rank, world_size)``.
    """
    required = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    missing = [k for k in required if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"init_from_env: environment variable(s) {', '.join(missing)} not set. Start the script with "
            f"`torchrun --nproc_per_node=N ...` (which sets them), or use launch() / --launcher none."
        )
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if backend is None:
        backend = default_backend(local_size)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
        # torchrun workers leave the group explicitly: a gloo group still alive when the interpreter
        # shuts down can abort the process ("terminate called without an active exception", about 1
        # exit in 40 on 2 CPU cores), which torchrun reports as a failed run after training finished.
        atexit.register(leave_process_group)
    if world_size % local_size == 0:
        comm.create_local_process_group(local_size)
    return rank, world_size
