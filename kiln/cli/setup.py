"""``default_setup``: what every ``kiln train`` process does before building the runner.

Detectron2's ``default_setup`` and MMDetection's ``tools/train.py`` preamble in one place:

* create ``work_dir``; rank 0 writes the resolved config to ``work_dir/config.py``;
* a log file per rank (``log.txt``, ``log.txt.rank1``, ...) and console output on rank 0;
* log the environment (python, torch, torchvision, CUDA, kiln version, git hash) and the command line;
* seed python/numpy/torch with ``seed + rank`` (a random seed is drawn, logged and stored in the
  config when none is given) and set cuDNN flags (``deterministic`` or ``cudnn_benchmark``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

__all__ = ["default_setup"]


def default_setup(cfg: Any, args: argparse.Namespace | None = None) -> logging.Logger:
    """Prepare this process for a run described by ``cfg``; return the ``kiln`` logger."""
    import torch

    from kiln.engine import comm
    from kiln.utils import collect_env_info, get_git_hash, set_random_seed, setup_logger

    rank = comm.get_rank()
    work_dir = cfg.get("work_dir") or "work_dirs/default"
    if rank == 0:
        os.makedirs(work_dir, exist_ok=True)
    comm.synchronize()
    logger = setup_logger(work_dir, rank=rank, level=cfg.get("log_level", "INFO"))
    logger.info("Rank %d of %d; command line: %s", rank, comm.get_world_size(), " ".join(sys.argv))
    if rank == 0:
        logger.info("Environment:\n%s", collect_env_info())
        logger.info("kiln git hash: %s", get_git_hash())
    seed = cfg.get("seed")
    if seed is None:
        # one seed for all ranks: draw on rank 0 and share it, so the config records the truth
        seed = comm.broadcast_object(set_random_seed(None))
        cfg.seed = int(seed)
    deterministic = bool(cfg.get("deterministic", False))
    used = set_random_seed(int(seed) + rank, deterministic=deterministic)
    logger.info("Seed %d (this rank uses %d), deterministic=%s", seed, used, deterministic)
    if not deterministic:
        torch.backends.cudnn.benchmark = bool(cfg.get("cudnn_benchmark", False))
    if rank == 0:
        path = os.path.join(work_dir, "config.py")
        cfg.dump(path)
        logger.info("Full config saved to %s", path)
    return logger
