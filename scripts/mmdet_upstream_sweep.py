"""Run every MMDetection config (3.3.0 and 2.28.2 trees) whose model kiln implements, and count.

For each non-``_base_`` config: load it with kiln, decide whether it is in scope (every ``type`` under
``model`` is registered in kiln), translate it to the canonical schema and build the runner (model,
datasets, loaders, evaluator, hooks) on a small generated dataset laid out as MMDetection expects
(``data/coco``, ``data/VOCdevkit``). With ``--train N``, also train N iterations and evaluate on two
images. Image scales in the pipelines are shrunk to 96 px (except for models built for one input size,
SSD300/SSD512) and loaders use no worker processes (what a user on a small machine passes);
pretrained-weight downloads (``init_cfg``/``pretrained``/``load_from``) are switched off; AMP configs
train in float32 (float16 on a CPU is many times slower). Prints one line per config and a summary table.

    python scripts/mmdet_upstream_sweep.py [--version 3.3.0|2.28.2|both] [--train 2] [--filter faster]
                                           [--exclude lsj] [--shard K/N]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import traceback
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from upstream_helpers import make_mini_coco, make_mini_proposals, make_mini_voc, upstream_configs  # noqa: E402

SMALL = 96
_SCALE_KEYS = ("scale", "img_scale", "scales")


def _types(node: Any, out: list[str]) -> list[str]:
    if isinstance(node, dict):
        t = node.get("type")
        if isinstance(t, str):
            out.append(t)
        for v in node.values():
            _types(v, out)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _types(v, out)
    return out


def missing_types(model: Any) -> list[str]:
    """Types under ``model`` that kiln's registries do not know (model parts and task utilities)."""
    from kiln.registry import MODELS, TASK_UTILS

    missing = []
    for t in _types(model, []):
        name = t.split(".")[-1]
        if name in ("nms", "soft_nms", "RoIAlign", "RoIPool", "Pretrained", "Kaiming", "Normal", "Xavier",
                    "Constant", "Uniform", "Caffe2Xavier", "BN", "SyncBN", "GN", "ReLU", "Conv2d", "Linear"):
            continue  # layer/op/init names read by the modules themselves
        if name not in MODELS and name not in TASK_UTILS:
            missing.append(t)
    return missing


def missing_datasets(cfg: dict) -> list[str]:
    """Dataset types the config's loaders name that kiln's DATASETS registry does not know."""
    from kiln.registry import DATASETS

    roots = [cfg.get(k) for k in ("train_dataloader", "val_dataloader", "test_dataloader")]
    data = cfg.get("data")
    if isinstance(data, dict):
        roots += [data.get(k) for k in ("train", "val", "test")]
    out = []
    for root in roots:
        node = root.get("dataset", root) if isinstance(root, dict) and "batch_size" in root else root
        for t in _types({"dataset": node} if isinstance(node, dict) else {}, []):
            if t.endswith("Dataset") and t not in DATASETS:
                out.append(t)
    return out


# Models whose anchors are laid out for one input size (SSD300/512: the neck's last levels need it) keep
# their pipelines' scales.
FIXED_INPUT_NECKS = ("SSDNeck",)


def fixed_input_size(model: Any) -> bool:
    """Whether the model only works at its configured input size (the sweep must not shrink it)."""
    neck = model.get("neck") if isinstance(model, dict) else None
    return isinstance(neck, dict) and str(neck.get("type", "")).split(".")[-1] in FIXED_INPUT_NECKS


def _shrink(node: Any, scales: bool = True) -> None:
    """Every resize-like transform to 96 px (unless ``scales=False``); dataset repeats to 1."""
    if isinstance(node, dict):
        t = str(node.get("type", ""))
        if scales and ("Resize" in t or t in ("MultiScaleFlipAug", "RandomCrop")):
            for key in _SCALE_KEYS:
                if key in node:
                    value = node[key]
                    multi = isinstance(value, list) and value and isinstance(value[0], (list, tuple))
                    node[key] = [(SMALL, SMALL), (SMALL + 16, SMALL + 16)] if multi else (SMALL, SMALL)
            if "crop_size" in node:
                node["crop_size"] = (SMALL, SMALL)
        if scales and t == "Pad" and node.get("size") is not None:  # large-scale-jitter pipelines pad to 1024
            node["size"] = (SMALL, SMALL)
        if t == "RepeatDataset":
            node["times"] = 1
        for v in node.values():
            _shrink(v, scales)
    elif isinstance(node, list):
        for v in node:
            _shrink(v, scales)


def _no_downloads(node: Any) -> None:
    if isinstance(node, dict):
        init = node.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            node["init_cfg"] = None
        if "pretrained" in node:
            node["pretrained"] = None
        for v in node.values():
            _no_downloads(v)
    elif isinstance(node, list):
        for v in node:
            _no_downloads(v)


def run_one(path: str, work: str, train_iters: int) -> tuple[str, str]:
    """``(status, detail)``: status in load-error, out-of-scope, no-data, build-error, train-error, ok.

    In scope: every type under ``model`` and every ``...Dataset`` type of the loaders is registered.
    """
    from kiln.config import Config
    from kiln.config.dialects import to_canonical
    from kiln.engine import Runner

    try:
        cfg = Config.fromfile(path)
    except Exception as exc:
        return "load-error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    model = cfg.get("model")
    if not isinstance(model, dict):
        return "out-of-scope", "no model dict"
    missing = missing_types(cfg.to_dict()["model"]) + missing_datasets(cfg.to_dict())
    if missing:
        return "out-of-scope", f"not in kiln: {sorted(set(missing))[:3]}"
    try:
        d = cfg.to_dict()
        _shrink(d, scales=not fixed_input_size(d.get("model")))
        _no_downloads(d)
        d["load_from"] = None
        d["work_dir"] = work
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            if isinstance(d.get(key), dict):
                d[key].update(num_workers=0, persistent_workers=False)
                if key == "train_dataloader":
                    d[key]["batch_size"] = 2
        data = d.get("data")
        if isinstance(data, dict):
            data.update(samples_per_gpu=2, workers_per_gpu=0)
        canonical = to_canonical(Config(d, filename=path))
        ow = canonical.get("optim_wrapper") or {}
        if train_iters and ow.get("type") == "AmpOptimWrapper":
            # float16 autocast on a CPU is many times slower than float32: the sweep trains AMP configs in
            # float32 (their AmpOptimWrapper is built and checked in tests/cli/test_upstream_mmdet3.py).
            amp_keys = ("type", "loss_scale", "dtype")
            canonical["optim_wrapper"] = {k: v for k, v in ow.items() if k not in amp_keys}
        train_cfg = dict(canonical.get("train_cfg") or {})
        if train_cfg:
            iters = "max_iters" in train_cfg or "Iter" in str(train_cfg.get("type", ""))
            train_cfg.update({"max_iters": max(1, train_iters)} if iters else {"max_epochs": 1})
            train_cfg["val_interval"] = 1 if not iters else max(1, train_iters)
            canonical["train_cfg"] = train_cfg
        runner = Runner.from_cfg(Config(canonical, filename=path))
    except FileNotFoundError as exc:  # a data layout the generator does not make (MOT, VOC in COCO json)
        return "no-data", f"{str(exc).splitlines()[0][:160]}"
    except Exception as exc:
        return "build-error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if train_iters:
        try:
            runner.train()
            if runner.test_loop is not None:
                runner.test()
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{tb.filename}:{tb.lineno}"
            return "train-error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]} @ {where}"
    return "ok", ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", default="both", choices=["3.3.0", "2.28.2", "both"])
    p.add_argument("--train", type=int, default=0, help="train this many iterations (0: build only)")
    p.add_argument("--filter", default="", help="only configs whose path contains this")
    p.add_argument("--exclude", default="", help="skip configs whose path contains this (e.g. lsj)")
    p.add_argument("--shard", default="0/1", help="K/N: only every N-th config starting at K (parallel runs)")
    args = p.parse_args()
    import logging

    logging.disable(logging.WARNING)
    versions = ["3.3.0", "2.28.2"] if args.version == "both" else [args.version]
    with tempfile.TemporaryDirectory() as root:
        make_mini_coco(os.path.join(root, "data", "coco"), num_train=4, num_val=2, size=SMALL)
        make_mini_proposals(os.path.join(root, "data", "coco"))  # Fast R-CNN's proposal files
        make_mini_voc(os.path.join(root, "data", "VOCdevkit"), num_train=2, num_test=2, size=SMALL)
        os.chdir(root)
        summary = {}
        for version in versions:
            tree = upstream_configs(version)
            files = sorted(os.path.join(d, f) for d, _, fs in os.walk(tree) for f in fs
                           if f.endswith(".py") and "_base_" not in d and args.filter in os.path.join(d, f)
                           and not (args.exclude and args.exclude in os.path.join(d, f)))
            k, n_shards = (int(v) for v in args.shard.split("/"))
            files = files[k::n_shards]
            counts: collections.Counter = collections.Counter()
            for i, path in enumerate(files):
                t0 = time.time()
                status, detail = run_one(path, os.path.join(root, "work", str(i)), args.train)
                counts[status] += 1
                if status != "out-of-scope":
                    rel = os.path.relpath(path, tree)
                    print(f"{version} {status:12s} {time.time() - t0:5.1f}s {rel} {detail}", flush=True)
            summary[version] = (len(files), counts)
        print("\nversion  configs  in-scope  ok  build-error  train-error  no-data  load-error")
        for version, (n, c) in summary.items():
            in_scope = n - c["out-of-scope"] - c["load-error"]
            print(f"{version:8s} {n:7d} {in_scope:9d} {c['ok']:3d} {c['build-error']:12d} "
                  f"{c['train-error']:12d} {c['no-data']:8d} {c['load-error']:11d}")


if __name__ == "__main__":
    main()
