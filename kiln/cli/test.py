"""``kiln test CONFIG CHECKPOINT``: evaluate a checkpoint on the config's test set.

Writes ``WORK_DIR/test_metrics.json`` (read by ``kiln summarize``); ``--out`` saves the detections
in COCO result format and ``--show-dir`` draws them on the test images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

from .common import (
    add_override_args,
    default_work_dir,
    load_canonical_config,
    resolve_checkpoint,
    user_errors,
)
from .errors import CLIError

__all__ = ["add_parser", "run", "build_test_objects", "evaluate_checkpoint"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln test``."""
    p = sub.add_parser(name, help="evaluate a checkpoint on the test set", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", help="a .pth file, or a work_dir (its last_checkpoint is used)")
    p.add_argument("--eval", nargs="+", default=None, metavar="METRIC", help="metrics (default: bbox)")
    p.add_argument("--out", default=None, help="write detections (COCO result json) here")
    p.add_argument("--show-dir", default=None, help="draw detections on the images into this directory")
    p.add_argument("--show-score-thr", type=float, default=0.3)
    p.add_argument("--work-dir", default=None, help="where test_metrics.json goes (default: cfg.work_dir)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="which data.<split> to use")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: the config's device, else cuda when available)")
    add_override_args(p)
    return p


def run_device(flag: str | None, cfg: Any) -> Any:
    """The device of a ``test``/``infer`` run: ``--device``, else the config's ``device``, else auto.

    Resolved by :func:`kiln.engine.device.resolve_device` (as training is): CUDA asked for where
    there is none is a :class:`CLIError` suggesting ``--device cpu``.
    """
    from kiln.engine.device import resolve_device

    requested, source = (flag, "--device") if flag else (cfg.get("device"), "device")
    try:
        return resolve_device(requested, source=source)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def build_test_objects(cfg: Any, split: str = "test", with_model: bool = True) -> tuple[Any, Any]:
    """(model without weights or ``None``, test dataset) from a canonical config (``<split>_dataloader``)."""
    from kiln.models import build_detector
    from kiln.registry import DATASETS

    loader = cfg.get(f"{split}_dataloader")
    if loader is None or loader.get("dataset") is None:
        raise CLIError(f"the config has no {split}_dataloader.dataset (data.{split}) entry to evaluate on")
    with user_errors("cannot build from config"):
        model_cfg = cfg.model.copy() if hasattr(cfg.model, "copy") else dict(cfg.model)
        model_cfg["pretrained"] = None  # the checkpoint supersedes ImageNet weights
        model = build_detector(model_cfg) if with_model else None
        ds_cfg = dict(loader.dataset)
        dataset = DATASETS.build(ds_cfg, default_args={"test_mode": True},
                                 cfg_path=f"{split}_dataloader.dataset")
    return model, dataset


def evaluate_checkpoint(cfg: Any, checkpoint: str, *, split: str = "test", device: Any = "cpu",
                        output_dir: str | None = None, metrics: list[str] | None = None,
                        extra_evaluators: list[Any] | None = None) -> dict[str, float]:
    """Evaluate ``checkpoint`` in the config's model on ``<split>_dataloader.dataset``, on ``device``."""
    import torch

    from kiln.data import build_test_loader
    from kiln.evaluation import DatasetEvaluators, build_evaluator, inference_on_dataset
    from kiln.model_zoo import load_weights

    model, dataset = build_test_objects(cfg, split)
    with user_errors(f"cannot load checkpoint '{checkpoint}'"):
        load_weights(model, checkpoint)
    device = torch.device(device)
    model.to(device).eval()
    ev_cfg = dict(cfg.get("test_evaluator") or cfg.get("val_evaluator") or {})
    if metrics:
        ev_cfg["metric"] = metrics
    with user_errors("cannot build the evaluator"):
        evaluator = build_evaluator(ev_cfg, dataset, output_dir=output_dir)
    evaluators = DatasetEvaluators([evaluator, *(extra_evaluators or [])])
    workers = int(cfg[f"{split}_dataloader"].get("num_workers", 0))
    loader = build_test_loader(dataset, batch_size=1, num_workers=workers, pin_memory=device.type == "cuda")
    return inference_on_dataset(model, loader, evaluators)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln test``."""
    args.checkpoint = resolve_checkpoint(args.checkpoint)
    cfg = load_canonical_config(args.config, args.cfg_options, args.opts)
    device = run_device(args.device, cfg)
    work_dir = args.work_dir or cfg.get("work_dir") or default_work_dir(args.config)
    os.makedirs(work_dir, exist_ok=True)
    extra = []
    if args.show_dir:
        from .show import ShowPredictions

        extra.append(ShowPredictions(args.show_dir, args.show_score_thr))
    out_dir = os.path.join(work_dir, "test_results")
    metrics = evaluate_checkpoint(cfg, args.checkpoint, split=args.split, device=device,
                                  output_dir=out_dir, metrics=args.eval, extra_evaluators=extra)
    metrics = {k: float(v) for k, v in metrics.items()}
    with open(os.path.join(work_dir, "test_metrics.json"), "w") as f:
        json.dump({"checkpoint": os.path.abspath(args.checkpoint), **metrics}, f, indent=2)
    if args.out:
        src = os.path.join(out_dir, "coco_instances_results.json")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        shutil.copyfile(src, args.out)
        print(f"detections written to {args.out}")
    for key in sorted(metrics):
        print(f"{key}: {metrics[key]:.4f}")
    print(f"metrics written to {os.path.join(work_dir, 'test_metrics.json')}")
    return 0
