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
    p.add_argument("--work-dir", default=None,
                   help="where test_metrics.json and test_results/ go (default: the run CHECKPOINT "
                        "belongs to - the work_dir given, or the one holding the .pth file - else "
                        "cfg.work_dir)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="which data.<split> to use")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: the config's device, else cuda when available)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: the config's tta_pipeline, views merged as tta_model says")
    add_override_args(p)
    p.set_defaults(_trailing_opts=True)  # `kiln test x.yaml model_final.pth MODEL.DEVICE cpu`
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


_TTA_DEFAULT = {"type": "DetTTAModel", "tta_cfg": {"nms": {"type": "nms", "iou_threshold": 0.5},
                                                   "max_per_img": 100}}


def apply_tta(cfg: Any, split: str = "test") -> dict[str, Any]:
    """MMDetection's ``tools/test.py --tta``: the ``<split>_dataloader`` dataset (inside any wrappers) runs
    ``tta_pipeline``, and the views of one image are merged as ``tta_model.tta_cfg`` says (per-class NMS at
    ``nms.iou_threshold``, then ``max_per_img``). Returns the merge settings for the model's ``tta_cfg``.
    """
    pipeline = cfg.get("tta_pipeline")
    if not pipeline:
        raise CLIError("--tta needs tta_pipeline in the config (a pipeline ending in TestTimeAug, as "
                       "MMDetection's retinanet_tta.py defines it)")
    tta_model = dict(cfg.get("tta_model") or _TTA_DEFAULT)
    kind = tta_model.pop("type", "DetTTAModel")
    tta_cfg = dict(tta_model.pop("tta_cfg", None) or _TTA_DEFAULT["tta_cfg"])
    if kind != "DetTTAModel" or tta_model:
        raise CLIError(f"tta_model: kiln merges test-time views as MMDetection's DetTTAModel(tta_cfg=...) "
                       f"does; got type={kind!r} with keys {sorted(tta_model)}")
    extra = sorted(set(tta_cfg) - {"nms", "max_per_img"})
    nms = dict(tta_cfg.get("nms") or {})
    if extra or nms.get("type", "nms") != "nms" or set(nms) - {"type", "iou_threshold"}:
        raise CLIError(f"tta_model.tta_cfg={tta_cfg!r}: kiln takes nms=dict(type='nms', iou_threshold=...) "
                       f"and max_per_img")
    node = cfg[f"{split}_dataloader"]["dataset"]
    while "dataset" in node:  # RepeatDataset / ClassBalancedDataset wrappers
        node = node["dataset"]
    node["pipeline"] = pipeline
    return {"nms": {"iou_threshold": float(nms.get("iou_threshold", 0.5))},
            "max_per_img": int(tta_cfg.get("max_per_img", 100))}


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
                        extra_evaluators: list[Any] | None = None, tta: bool = False) -> dict[str, float]:
    """Evaluate ``checkpoint`` in the config's model on ``<split>_dataloader.dataset``, on ``device``
    (with ``tta``, as :func:`apply_tta` says)."""
    import torch

    from kiln.data import build_test_loader
    from kiln.evaluation import DatasetEvaluators, build_evaluator, inference_on_dataset
    from kiln.model_zoo import load_weights

    tta_cfg = apply_tta(cfg, split) if tta else None
    model, dataset = build_test_objects(cfg, split)
    if tta_cfg is not None:
        model.tta_cfg = tta_cfg
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


def _show_sink(cfg: Any, args: argparse.Namespace) -> Any:
    """What ``--show-dir`` draws with: MMDetection 3.x configs (a ``DetVisualizationHook`` in
    ``default_hooks``/``custom_hooks``) get ground truth + predictions side by side through a
    ``DetLocalVisualizer``, as MMDetection's ``tools/test.py --show-dir``; other configs get kiln's drawing
    of the predictions."""
    from .show import ShowPredictions, ShowWithVisualizer

    hooks = list((cfg.get("default_hooks") or {}).values()) + list(cfg.get("custom_hooks") or [])
    if not any(isinstance(h, dict) and h.get("type") == "DetVisualizationHook" for h in hooks):
        return ShowPredictions(args.show_dir, args.show_score_thr)
    with user_errors("cannot build the test dataset for --show-dir"):
        _, dataset = build_test_objects(cfg, args.split, with_model=False)
    from kiln.visualization.datasample import dataset_meta

    return ShowWithVisualizer(args.show_dir, args.show_score_thr, dataset_meta=dataset_meta(dataset),
                              visualizer_cfg=cfg.get("visualizer"))


def run_dir_of(checkpoint: str) -> str | None:
    """The training run ``checkpoint`` belongs to: the directory given, or the one holding the file when
    a run wrote it there (its ``last_checkpoint`` pointer is next to it). Results of testing a run go into
    that run, not into a directory named after the config."""
    if os.path.isdir(checkpoint):
        return checkpoint
    folder = os.path.dirname(os.path.abspath(checkpoint))
    return folder if os.path.isfile(os.path.join(folder, "last_checkpoint")) else None


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln test``."""
    given = args.checkpoint
    args.checkpoint = resolve_checkpoint(args.checkpoint)
    cfg = load_canonical_config(args.config, args.cfg_options, args.opts)
    device = run_device(args.device, cfg)
    work_dir = args.work_dir or run_dir_of(given) or cfg.get("work_dir") or default_work_dir(args.config)
    os.makedirs(work_dir, exist_ok=True)
    extra = []
    if args.show_dir:
        extra.append(_show_sink(cfg, args))
    out_dir = os.path.join(work_dir, "test_results")
    metrics = evaluate_checkpoint(cfg, args.checkpoint, split=args.split, device=device,
                                  output_dir=out_dir, metrics=args.eval, extra_evaluators=extra,
                                  tta=args.tta)
    metrics = {k: float(v) for k, v in metrics.items()}
    with open(os.path.join(work_dir, "test_metrics.json"), "w") as f:
        json.dump({"checkpoint": os.path.abspath(args.checkpoint), **metrics}, f, indent=2)
    if args.out:
        src = os.path.join(out_dir, "coco_instances_results.json")
        if not os.path.isfile(src):
            raise CLIError(f"--out: the config's test evaluator wrote no COCO result file ({src}); --out "
                           f"works with COCO metrics (CocoMetric, evaluation metric='bbox')")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        shutil.copyfile(src, args.out)
        print(f"detections written to {args.out}")
    for key in sorted(metrics):
        print(f"{key}: {metrics[key]:.4f}")
    print(f"metrics written to {os.path.join(work_dir, 'test_metrics.json')}")
    return 0
