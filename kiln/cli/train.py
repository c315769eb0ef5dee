"""``kiln train CONFIG``: train (or, with ``--eval-only``, evaluate) a model from a config.

MMDetection's and Detectron2's flags are both accepted::

    kiln train cfg.py --work-dir out --cfg-options model.backbone.depth=18
    kiln train --config-file cfg.yaml --num-gpus 2 --opts SOLVER.BASE_LR 0.01
    torchrun --nproc_per_node 2 -m kiln train cfg.py --launcher pytorch

The config is translated into the canonical run schema first (``kiln config print --canonical`` shows
the result); the flags are then written into it as overrides, and the runner builder applies them.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from .common import add_override_args, default_work_dir, load_canonical_config, user_errors
from .errors import CLIError

__all__ = ["add_parser", "run", "apply_train_args", "find_last_checkpoint"]

logger = logging.getLogger("kiln.cli")


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln train``."""
    p = sub.add_parser(name, help="train a model from a config", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="config file (.py/.json/.yaml, Detectron2 yaml, kiln::name)")
    p.add_argument("--config-file", default=None, help="same as CONFIG (Detectron2 spelling)")
    p.add_argument("--work-dir", default=None, help="output directory (default: cfg.work_dir or "
                                                     "./work_dirs/<config name>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="resume from WORK_DIR/last_checkpoint when it exists (else start fresh)")
    g.add_argument("--resume-from", default=None, metavar="CKPT", help="resume from this checkpoint")
    p.add_argument("--load-from", default=None, metavar="CKPT",
                   help="initialize model weights from this checkpoint (no optimizer/iteration state)")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate (the --load-from/--resume-from checkpoint, or the last one)")
    p.add_argument("--no-validate", action="store_true", help="skip evaluation during training")
    p.add_argument("--num-gpus", type=int, default=1, help="worker processes per machine")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto", help="rendezvous URL (default: a free local port)")
    p.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                   help="'pytorch': started by torchrun; read rank/world size from the environment")
    p.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: cfg.seed or random)")
    p.add_argument("--deterministic", action="store_true", help="deterministic cuDNN/torch algorithms")
    p.add_argument("--amp", action="store_true", help="mixed precision training (AmpOptimWrapper)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--auto-scale-lr", action="store_true",
                   help="lr x (total batch size) / auto_scale_lr.base_batch_size (MMDetection's flag)")
    add_override_args(p)
    return p


def find_last_checkpoint(work_dir: str) -> str | None:
    """The checkpoint ``WORK_DIR/last_checkpoint`` names (kiln's and MMEngine's pointer file); ``None`` when
    the work dir holds no run. A pointer that cannot be followed is a :class:`CLIError` listing the
    checkpoints present (:func:`kiln.engine.checkpoint.find_resume_checkpoint`): never a silent restart."""
    from kiln.engine.checkpoint import find_resume_checkpoint

    try:
        return find_resume_checkpoint(work_dir)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None


def apply_train_args(cfg: Any, args: argparse.Namespace, config_path: str) -> Any:
    """Write the command-line choices into a canonical config (command line wins over the file).

    Only overrides: what each flag means is applied by the runner builder, exactly as if the config
    had said it (``--seed`` is ``randomness.seed``, ``--device`` is ``device``, ``--amp`` is an
    ``AmpOptimWrapper``, ``--resume-from`` is ``resume``, ...).
    """
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif not cfg.get("work_dir"):
        cfg.work_dir = default_work_dir(config_path)
    if args.load_from:
        if not os.path.isfile(args.load_from):
            raise CLIError(f"--load-from checkpoint '{args.load_from}' does not exist")
        cfg.load_from = args.load_from
    if args.resume_from:
        if not os.path.isfile(args.resume_from):
            raise CLIError(f"--resume-from checkpoint '{args.resume_from}' does not exist")
        cfg.resume = args.resume_from
    elif args.resume:
        last = find_last_checkpoint(cfg.work_dir)
        if last is None:
            print(f"--resume: no checkpoint in {cfg.work_dir}; starting from scratch")
        cfg.resume = last or False
    if args.seed is not None or args.deterministic:
        randomness = dict(cfg.get("randomness") or {})
        if args.seed is not None:
            randomness["seed"] = args.seed
        if args.deterministic:
            randomness["deterministic"] = True
        cfg.randomness = randomness
    if args.device:
        cfg.device = args.device
    if args.amp:
        if cfg.get("optim_wrapper") is None:
            raise CLIError("--amp needs an optimizer in the config (optim_wrapper=... or optimizer=...)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
    if getattr(args, "auto_scale_lr", False):
        scale = dict(cfg.get("auto_scale_lr") or {})
        if "base_batch_size" not in scale:
            raise CLIError("--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in the config: the "
                           "total batch size its lr was set for (MMDetection's configs say 16).")
        scale["enable"] = True
        cfg.auto_scale_lr = scale
    if args.no_validate:
        # Training runs no evaluation; `--eval-only`/`kiln test` still evaluate with the same metric.
        if cfg.get("val_evaluator") is not None and cfg.get("test_evaluator") is None:
            cfg.test_evaluator = cfg.val_evaluator
        cfg.pop("val_evaluator", None)
        if cfg.get("default_hooks"):
            cfg.default_hooks.pop("eval", None)
    if args.launcher == "pytorch":
        cfg.launcher = "pytorch"
    return cfg


def _worker(cfg: Any, args: argparse.Namespace) -> None:
    """One training process (rank): set up the work_dir, build the runner, train or evaluate."""
    from kiln.engine import Runner
    from kiln.engine.defaults import default_setup

    default_setup(cfg, args)
    with user_errors("cannot build from config"):
        runner = Runner.from_cfg(cfg)
    if args.eval_only:
        resume = cfg.get("resume")
        ckpt = (resume if isinstance(resume, str) else None) or cfg.get("load_from") \
            or find_last_checkpoint(cfg.work_dir)
        if not ckpt:
            raise CLIError("--eval-only needs a checkpoint: pass --load-from CKPT (or train first)")
        runner.load_checkpoint(ckpt)
        metrics = runner.test()
        print(f"evaluation of {ckpt}: {metrics}")
        return
    runner.train()


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln train``."""
    config_path = args.config or args.config_file
    if not config_path:
        raise CLIError("no config given: kiln train CONFIG (or --config-file CONFIG)")
    if args.config and args.config_file and args.config != args.config_file:
        raise CLIError(f"two configs given: '{args.config}' and --config-file '{args.config_file}'")
    cfg = load_canonical_config(config_path, args.cfg_options, args.opts)
    cfg = apply_train_args(cfg, args, config_path)
    if args.launcher == "pytorch":
        from kiln.engine.launch import init_from_env

        init_from_env()
        _worker(cfg, args)
        return 0
    if args.num_gpus < 1 or args.num_machines < 1:
        raise CLIError("--num-gpus and --num-machines must be >= 1")
    from kiln.engine.launch import launch

    launch(_worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(cfg, args))
    return 0
