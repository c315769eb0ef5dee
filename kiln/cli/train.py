"""``kiln train CONFIG``: train (or, with ``--eval-only``, evaluate) a model from a config.

MMDetection's and Detectron2's flags are both accepted::

    kiln train kiln::shapes/retinanet_r18_fpn_shapes.py --work-dir out --cfg-options total_epochs=2
    kiln train --config-file cfg.yaml --num-gpus 2 SOLVER.BASE_LR 0.01   (or --opts SOLVER.BASE_LR 0.01)
    kiln train --config-file cfg.yaml --eval-all --start-iter 2000 --end-iter 8000
    torchrun --nproc_per_node 2 -m kiln train cfg.py --launcher pytorch

DeFRCN's evaluation flags: --eval-only [--eval-iter N] evaluates one checkpoint, --eval-all every saved
one in order (--start-iter/--end-iter bound the iterations), --eval-during-train each new checkpoint of
a running training as it appears.

The config is translated into the canonical run schema first (``kiln config print --canonical`` shows
the result); the flags are then written into it as overrides, and the runner builder applies them.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from .common import add_override_args, default_work_dir, is_d2_yaml, load_canonical_config, user_errors
from .errors import CLIError, CLIRuntimeError

__all__ = ["add_parser", "run", "apply_train_args", "find_last_checkpoint", "check_eval_flags"]

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
                   help="only evaluate (the --load-from/--resume-from checkpoint, or the last one); results "
                        "go to WORK_DIR/inference/")
    p.add_argument("--eval-all", action="store_true",
                   help="evaluate every saved checkpoint of WORK_DIR in iteration order (DeFRCN/FsDet)")
    p.add_argument("--eval-during-train", action="store_true",
                   help="evaluate each new checkpoint of a training writing to WORK_DIR as it appears, until "
                        "its last one (DeFRCN/FsDet; run it next to the training)")
    p.add_argument("--eval-iter", type=int, default=-1, metavar="N",
                   help="with --eval-only: the checkpoint saved after N iterations (model_{N-1:07d}.pth)")
    p.add_argument("--start-iter", type=int, default=-1, metavar="N",
                   help="with --eval-all: skip checkpoints saved before iteration N")
    p.add_argument("--end-iter", type=int, default=-1, metavar="N",
                   help="with --eval-all: stop after the checkpoints saved by iteration N (model_final "
                        "is then not evaluated)")
    p.add_argument("--eval-poll-seconds", type=float, default=10.0, metavar="S",
                   help="with --eval-during-train: how often to look for a new checkpoint (default 10)")
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
    p.set_defaults(_trailing_opts=True)  # `kiln train --config-file x.yaml SOLVER.BASE_LR 0.01`
    return p


def check_eval_flags(args: argparse.Namespace) -> None:
    """Refuse flag combinations that have no meaning (DeFRCN's flags each belong to one mode)."""
    modes = [f for f, on in (("--eval-only", args.eval_only), ("--eval-all", args.eval_all),
                             ("--eval-during-train", args.eval_during_train)) if on]
    if len(modes) > 1:
        raise CLIError(f"{' and '.join(modes)} are different evaluation modes; give one of them")
    if args.eval_iter != -1:
        if not args.eval_only:
            raise CLIError("--eval-iter N names the checkpoint --eval-only evaluates; add --eval-only "
                           "(or use --eval-all --start-iter N --end-iter N)")
        if args.eval_iter < 1:
            raise CLIError(f"--eval-iter must be an iteration count >= 1, got {args.eval_iter}")
        if args.load_from or args.resume_from:
            raise CLIError("--eval-iter picks the checkpoint from the work dir; it cannot be combined with "
                           "--load-from/--resume-from, which name one themselves")
    for flag, value in (("--start-iter", args.start_iter), ("--end-iter", args.end_iter)):
        if value != -1 and not args.eval_all:
            raise CLIError(f"{flag} bounds the checkpoints --eval-all evaluates; add --eval-all")
        if value != -1 and value < 1:
            raise CLIError(f"{flag} must be an iteration count >= 1, got {value}")
    if args.end_iter != -1 and args.start_iter > args.end_iter:
        raise CLIError(f"--start-iter {args.start_iter} is after --end-iter {args.end_iter}: no checkpoint "
                       f"can be in that range")
    if modes and (args.num_gpus * args.num_machines > 1 or args.launcher == "pytorch"):
        raise CLIError(f"{modes[0]} evaluates in this one process; drop --num-gpus/--num-machines/--launcher "
                       f"(training with several processes is unaffected)")
    if args.eval_poll_seconds <= 0:
        raise CLIError(f"--eval-poll-seconds must be > 0, got {args.eval_poll_seconds}")


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


def _worker(cfg: Any, args: argparse.Namespace, d2_node: Any = None) -> None:
    """One training process (rank): set up the work_dir, build the runner, train."""
    import contextlib

    from kiln.engine import Runner, comm
    from kiln.engine.defaults import default_setup, dump_config
    from kiln.engine.work_dir_lock import WorkDirBusyError, WorkDirLock

    with contextlib.ExitStack() as stack:
        if cfg.get("work_dir") and comm.is_main_process():
            try:  # before anything is written there: a running run's config and logs stay its own
                stack.enter_context(WorkDirLock(cfg.work_dir))
            except WorkDirBusyError as e:
                raise CLIRuntimeError(str(e)) from None
        default_setup(cfg, args)
        if d2_node is not None and comm.is_main_process():
            dump_config(d2_node, cfg.work_dir)  # Detectron2's OUTPUT_DIR/config.yaml: the merged CfgNode
        with user_errors("cannot build from config"):
            runner = Runner.from_cfg(cfg)
        runner.train()


def _evaluate(cfg: Any, args: argparse.Namespace, d2_node: Any) -> None:
    """--eval-only / --eval-all / --eval-during-train, in this process (see :mod:`kiln.cli.d2_eval`)."""
    from kiln.engine.defaults import default_setup, dump_config

    from . import d2_eval

    default_setup(cfg, args)
    if d2_node is not None:
        dump_config(d2_node, cfg.work_dir)
    evaluator = d2_eval.CheckpointEvaluator(cfg, device=cfg.get("device"), tta=d2_eval.wants_tta(d2_node))
    if args.eval_only:
        resume = cfg.get("resume")
        if args.eval_iter != -1:
            ckpt = d2_eval.checkpoint_for_iteration(cfg, args.eval_iter)
        else:
            ckpt = (resume if isinstance(resume, str) else None) or cfg.get("load_from") \
                or find_last_checkpoint(cfg.work_dir)
        if not ckpt:
            raise CLIError("--eval-only needs a checkpoint: pass --load-from CKPT (MODEL.WEIGHTS), "
                           "--eval-iter N, or train first")
        metrics = evaluator.evaluate(ckpt, results_name="res_final.json")
        print(f"evaluation of {ckpt}: {metrics}")
    elif args.eval_all:
        d2_eval.evaluate_all(evaluator, cfg, args.start_iter, args.end_iter)
    else:
        d2_eval.evaluate_during_train(evaluator, cfg, poll_seconds=args.eval_poll_seconds)


def _split_config_and_opts(args: argparse.Namespace) -> str:
    """The config path; with ``--config-file``, a positional word is the first trailing override."""
    if args.config and args.config_file and args.config != args.config_file:
        word = args.config
        if os.path.isfile(word) or "::" in word or word.endswith((".py", ".yaml", ".yml", ".json")):
            raise CLIError(f"two configs given: '{args.config}' and --config-file '{args.config_file}'")
        args.opts = [word, *(args.opts or [])]
    config_path = args.config_file or args.config
    if not config_path:
        raise CLIError("no config given: kiln train CONFIG (or --config-file CONFIG)")
    return config_path


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln train``."""
    config_path = _split_config_and_opts(args)
    check_eval_flags(args)
    world = args.num_gpus * args.num_machines
    cfg = load_canonical_config(config_path, args.cfg_options, args.opts, num_gpus=max(world, 1))
    cfg = apply_train_args(cfg, args, config_path)
    d2_node = _d2_node(config_path, args.opts)
    if args.eval_only or args.eval_all or args.eval_during_train:
        _evaluate(cfg, args, d2_node)
        return 0
    if args.launcher == "pytorch":
        from kiln.engine.launch import init_from_env

        init_from_env()
        _worker(cfg, args, d2_node)
        return 0
    if args.num_gpus < 1 or args.num_machines < 1:
        raise CLIError("--num-gpus and --num-machines must be >= 1")
    from kiln.engine.launch import launch

    launch(_worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(cfg, args, d2_node))
    return 0


def _d2_node(config_path: str, opts: Any) -> Any:
    """The merged Detectron2 ``CfgNode`` of a Detectron2 yaml (saved as config.yaml), else ``None``."""
    from kiln.model_zoo import resolve_config_path

    real = resolve_config_path(config_path)
    if not is_d2_yaml(real):
        return None
    from .d2_config import load_d2_node

    with user_errors(f"cannot load config '{config_path}'"):
        return load_d2_node(real, list(opts or []))
