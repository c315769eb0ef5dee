"""``kiln infer CONFIG CHECKPOINT IMAGES... --out-dir DIR``: detections drawn on images, plus a JSON.

The images run through the config's test pipeline (``data.test.pipeline``) exactly as in
``kiln test``: they are wrapped as an unlabeled COCO-format dataset of the config's classes, so
resizing, normalization and mapping boxes back to original pixels are the tested code paths.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
from typing import Any

from .common import add_override_args, load_canonical_config, resolve_checkpoint, user_errors
from .errors import CLIError

__all__ = ["add_parser", "run", "class_names_of"]

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln infer``."""
    p = sub.add_parser(name, help="run a detector on images; write PNGs with boxes and a JSON",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", help="a .pth file, or a work_dir (its last_checkpoint is used)")
    p.add_argument("images", nargs="*", help="image files, directories or glob patterns")
    p.add_argument("--dataset-images", type=int, default=0, metavar="N",
                   help="use the first N images of the config's data.test instead of IMAGES")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--score-thr", type=float, default=0.3, help="draw/keep detections above this score")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: the config's device, else cuda when available)")
    add_override_args(p)
    return p


def class_names_of(cfg: Any, dataset: Any = None) -> list[str] | None:
    """Class names from the dataset, the test dataset's ``classes`` or its type's ``CLASSES``."""
    for obj in (dataset, getattr(dataset, "dataset", None)):
        names = getattr(obj, "CLASSES", None) if obj is not None else None
        if names:
            return list(names)
    test = (cfg.get("test_dataloader") or {}).get("dataset") or {}
    if test.get("classes"):
        return list(test["classes"])
    if (test.get("metainfo") or {}).get("classes"):  # MMDetection 3.x class subsets
        return list(test["metainfo"]["classes"])
    from kiln.registry import DATASETS

    cls = DATASETS.get(test.get("type", "")) if isinstance(test.get("type"), str) else None
    names = getattr(cls, "CLASSES", None)
    if names:
        return list(names)
    if test.get("ann_file") and dataset is None:
        # Classes read from the test set's annotation file (a COCO json names its categories).
        from kiln.models import dataset_classes

        where = f"test_dataloader.dataset ({test.get('ann_file')})"
        with user_errors(f"cannot read the class names from {where}"):
            names = dataset_classes(DATASETS.build(dict(test, pipeline=[]), default_args={"test_mode": True},
                                                   cfg_path="test_dataloader.dataset"))
        return list(names) if names else None
    return None


def _expand(patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pat in patterns:
        if os.path.isdir(pat):
            files += sorted(os.path.join(pat, f) for f in os.listdir(pat) if f.lower().endswith(_IMAGE_EXT))
        elif os.path.isfile(pat):
            files.append(pat)
        else:
            hits = sorted(glob.glob(pat))
            if not hits:
                raise CLIError(f"image '{pat}' does not exist (and matches no file as a pattern)")
            files += hits
    return [os.path.abspath(f) for f in files]


def _dataset_images(cfg: Any, n: int) -> list[str]:
    """Absolute paths of the first ``n`` images of ``data.test``."""
    from .test import build_test_objects

    if n < 1:
        raise CLIError("--dataset-images must be >= 1")
    _, dataset = build_test_objects(cfg, "test", with_model=False)
    infos = getattr(dataset, "data_infos", None)
    if infos is None:
        raise CLIError("--dataset-images needs a data.test dataset with data_infos (CocoDataset-like)")
    prefix = getattr(dataset, "img_prefix", None) or ""
    return [os.path.abspath(os.path.join(prefix, info["filename"])) for info in infos[:n]]


def _unlabeled_coco(files: list[str], class_names: list[str], path: str) -> None:
    from PIL import Image

    images = []
    for i, f in enumerate(files, 1):
        try:
            with Image.open(f) as im:
                w, h = im.size
        except OSError as exc:
            raise CLIError(f"cannot read image '{f}': {exc}") from exc
        images.append({"id": i, "file_name": f, "width": w, "height": h})
    cats = [{"id": i, "name": n} for i, n in enumerate(class_names, 1)]
    with open(path, "w") as fh:
        json.dump({"images": images, "annotations": [], "categories": cats}, fh)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln infer``."""
    from kiln.data import build_test_loader
    from kiln.evaluation import inference_on_dataset
    from kiln.model_zoo import load_weights
    from kiln.models import build_detector
    from kiln.registry import DATASETS

    from .test import run_device

    args.checkpoint = resolve_checkpoint(args.checkpoint)
    if bool(args.images) == bool(args.dataset_images):
        raise CLIError("give IMAGES or --dataset-images N (one of the two)")
    cfg = load_canonical_config(args.config, args.cfg_options, args.opts)
    device = run_device(args.device, cfg)
    files = _expand(args.images) if args.images else _dataset_images(cfg, args.dataset_images)
    names = class_names_of(cfg)
    if not names:
        raise CLIError("cannot tell the class names: set test_dataloader.dataset.metainfo=dict("
                       "classes=(...)) (data.test.classes in 2.x configs)")
    os.makedirs(args.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ann = os.path.join(tmp, "images.json")
        _unlabeled_coco(files, names, ann)
        test = dict(cfg.test_dataloader.dataset)
        with user_errors("cannot build from config"):
            dataset = DATASETS.build(
                dict(type="CocoDataset", ann_file=ann, img_prefix="", pipeline=test["pipeline"],
                     classes=names, test_mode=True), cfg_path="data.test")
            model_cfg = dict(cfg.model)
            model_cfg["pretrained"] = None
            model = build_detector(model_cfg)
        with user_errors(f"cannot load checkpoint '{args.checkpoint}'"):
            load_weights(model, args.checkpoint)
        model.to(device).eval()
        from .show import ShowPredictions

        sink = ShowPredictions(args.out_dir, args.score_thr, names)
        loader = build_test_loader(dataset, batch_size=1, pin_memory=device.type == "cuda")
        inference_on_dataset(model, loader, sink, progress=False)
    out_json = os.path.join(args.out_dir, "predictions.json")
    with open(out_json, "w") as f:
        json.dump(sink.records, f, indent=1)
    n = sum(len(r["boxes"]) for r in sink.records)
    print(f"{len(sink.records)} images, {n} detections with score >= {args.score_thr}")
    print(f"wrote {len(sink.records)} PNGs and {out_json}")
    return 0
