"""Detectron2-style entry-point helpers: ``default_argument_parser``, ``default_setup``, ``seed_all_rng``.

``default_setup`` accepts both config dialects: MM style (``work_dir``, ``seed``, ``deterministic``,
``cudnn_benchmark``, ``log_level``) and Detectron2 style (``OUTPUT_DIR``, ``SEED``, ``CUDNN_BENCHMARK``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from kiln.utils.config_access import cfg_get
from kiln.utils.rng import set_random_seed

__all__ = ["default_argument_parser", "default_setup", "seed_all_rng", "dump_config"]


def seed_all_rng(seed: int | None = None) -> int:
    """Detectron2's name for :func:`kiln.utils.rng.set_random_seed` (``None`` draws a seed, returned)."""
    return set_random_seed(seed)


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The Detectron2 training-script arguments (plus MM's ``--work-dir``/``--cfg-options``).

    ``--config-file``, ``--resume``, ``--eval-only``, ``--num-gpus``, ``--num-machines``,
    ``--machine-rank``, ``--dist-url`` and trailing ``KEY VALUE`` overrides (``opts``), plus the
    evaluation flags of DeFRCN's (FsDet's) parser: ``--eval-all``, ``--eval-during-train``,
    ``--eval-iter``, ``--start-iter``, ``--end-iter`` (``kiln train`` gives them their meaning).
    """
    parser = argparse.ArgumentParser(
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train or evaluate with a kiln config.",
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="resume from the last checkpoint in the output dir (else load MODEL.WEIGHTS)",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate")
    parser.add_argument("--eval-all", action="store_true", help="evaluate every saved checkpoint")
    parser.add_argument("--eval-during-train", action="store_true",
                        help="evaluate each new checkpoint of a running training")
    parser.add_argument("--eval-iter", type=int, default=-1, help="checkpoint iteration for --eval-only")
    parser.add_argument("--start-iter", type=int, default=-1, help="first iteration for --eval-all")
    parser.add_argument("--end-iter", type=int, default=-1, help="last iteration for --eval-all")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine")
    # A port derived from the uid, so two users on one machine rarely collide.
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    parser.add_argument(
        "--dist-url",
        default=f"tcp://127.0.0.1:{port}",
        help="initialization URL for torch.distributed ('auto' picks a free port)",
    )
    parser.add_argument("--work-dir", default=None, help="output directory (overrides the config)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="MM-style overrides, e.g. optimizer.lr=0.02",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="Detectron2-style overrides: KEY VALUE pairs at the end of the command",
    )
    return parser


def _cfg_value(cfg: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = cfg_get(cfg, key)
        if value is not None:
            return value
    return default


def default_setup(cfg: Any, args: argparse.Namespace | None = None) -> logging.Logger:
    """Prepare this process for a run: output dir, logs, environment info, config dump, seeding.

    * creates the output dir (``work_dir`` / ``OUTPUT_DIR``) on rank 0;
    * a log file per rank and console output on rank 0;
    * logs the environment, the command line and ``args``;
    * rank 0 writes the full config to the output dir;
    * seeds python/numpy/torch with ``seed + rank`` (a negative or missing seed draws one);
    * cuDNN: ``deterministic`` (MM) or ``CUDNN_BENCHMARK`` / ``cudnn_benchmark``.

    Returns the configured ``kiln`` logger.
    """
    import torch

    from kiln.utils import collect_env_info, setup_logger

    from . import comm

    rank = comm.get_rank()
    output_dir = _cfg_value(cfg, "work_dir", "OUTPUT_DIR", default=None)
    if args is not None and getattr(args, "work_dir", None):
        output_dir = args.work_dir
    output_dir = output_dir or os.path.join("work_dirs", "default")
    if rank == 0:
        os.makedirs(output_dir, exist_ok=True)
    logger = setup_logger(output_dir, rank=rank, level=_cfg_value(cfg, "log_level", default="INFO"))
    logger.info("Rank %d of %d; command line: %s", rank, comm.get_world_size(), " ".join(sys.argv))
    if rank == 0:
        logger.info("Environment:\n%s", collect_env_info())
    if args is not None:
        logger.info("Arguments: %s", vars(args))
    seed = _cfg_value(cfg, "randomness.seed", "seed", "SEED", default=None)
    if seed is None or int(seed) < 0:
        seed = (
            comm.broadcast_object(set_random_seed(None))
            if comm.get_world_size() > 1
            else set_random_seed(None)
        )
    used = set_random_seed(
        int(seed) + rank,
        deterministic=bool(_cfg_value(cfg, "randomness.deterministic", "deterministic", default=False)),
    )
    logger.info("Using seed %d on rank %d", used, rank)
    bench = _cfg_value(cfg, "env_cfg.cudnn_benchmark", "cudnn_benchmark", "CUDNN_BENCHMARK", default=False)
    if not _cfg_value(cfg, "randomness.deterministic", "deterministic", default=False):
        torch.backends.cudnn.benchmark = bool(bench)
    if rank == 0:
        dump_config(cfg, output_dir)
    return logger


def dump_config(cfg: Any, output_dir: str) -> str | None:
    """Save the full config into ``output_dir``: a Detectron2 ``CfgNode`` as ``config.yaml`` (Detectron2's
    name; ``merge_from_file`` reads it back), a kiln ``Config`` as ``config.py``. Returns the path written,
    ``None`` when ``cfg`` cannot be dumped (the run goes on; the log says why)."""
    log = logging.getLogger("kiln")
    dump = getattr(cfg, "dump", None)
    if not callable(dump):
        return None
    is_cfg_node = hasattr(cfg, "freeze") and hasattr(cfg, "defrost")
    path = os.path.join(output_dir, "config.yaml" if is_cfg_node else "config.py")
    try:
        os.makedirs(output_dir, exist_ok=True)
        if is_cfg_node:
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump())
        else:
            dump(path)
        log.info("Full config saved to %s", path)
    except Exception as exc:  # the run can go on without the dump; say why it is missing
        log.warning("Could not save the config to %s: %s", path, exc)
        return None
    return path
