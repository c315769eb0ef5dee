"""Time ``Config.fromfile`` on a 4-file, 3-format inherited config, against mmengine.

The config (written to a temp dir): ``model.py`` + ``schedule.yaml`` + ``runtime.json`` bases,
and ``exp.py`` inheriting all three with a recursive dict merge, a ``_delete_`` replacement
and list replacement. kiln and mmengine load the same files.

Measured, in the same run:
  * warm: per-load time of ``Config.fromfile`` in a process that has already imported the
    library and loaded the config once (median of --repeat loads);
  * cold: a fresh interpreter importing the library and loading the config once (median of
    --cold runs).
mmengine is used from this interpreter when importable (the ``bench`` extra), or from another
interpreter given with ``--mm-python`` (e.g. a throwaway venv: ``python -m venv /tmp/mm &&
/tmp/mm/bin/pip install mmengine``). Goal: kiln / mmengine <= 0.5.

    .venv/bin/python benchmarks/config_load.py [--mm-python /tmp/mm/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

FILES = {
    "base/model.py": """
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            type='RetinaNet',
            backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                          frozen_stages=1, norm_cfg=norm_cfg, style='pytorch'),
            neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                      start_level=1, add_extra_convs=True, num_outs=5),
            bbox_head=dict(type='RetinaHead', num_classes=80, in_channels=256, stacked_convs=4,
                           feat_channels=256, anchor_ratios=[0.5, 1.0, 2.0],
                           anchor_strides=[8, 16, 32, 64, 128],
                           loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25),
                           loss_bbox=dict(type='SmoothL1Loss', beta=0.11, loss_weight=1.0)))
        train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4))
        test_cfg = dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', iou_thr=0.5), max_per_img=100)
    """,
    "base/schedule.yaml": """
        optimizer: {type: SGD, lr: 0.01, momentum: 0.9, weight_decay: 0.0001}
        optimizer_config:
          grad_clip: {max_norm: 35, norm_type: 2}
        lr_config:
          policy: step
          warmup: linear
          warmup_iters: 500
          warmup_ratio: 0.3333333
          step: [8, 11]
        total_epochs: 12
    """,
    "base/runtime.json": json.dumps({
        "checkpoint_config": {"interval": 1},
        "log_config": {"interval": 50, "hooks": [{"type": "TextLoggerHook"}]},
        "dist_params": {"backend": "nccl"},
        "log_level": "INFO",
        "load_from": None,
        "resume_from": None,
        "workflow": [["train", 1]],
    }, indent=2),
    "exp.py": """
        _base_ = ['base/model.py', 'base/schedule.yaml', 'base/runtime.json']
        data_root = 'data/coco/'
        img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', img_scale=(1333, 800), keep_ratio=True),
            dict(type='RandomFlip', flip_ratio=0.5),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
        ]
        data = dict(
            imgs_per_gpu=2, workers_per_gpu=2,
            train=dict(type='CocoDataset', ann_file=data_root + 'annotations/instances_train2017.json',
                       img_prefix=data_root + 'train2017/', pipeline=train_pipeline),
            val=dict(type='CocoDataset', ann_file=data_root + 'annotations/instances_val2017.json',
                     img_prefix=data_root + 'val2017/', pipeline=train_pipeline))
        model = dict(backbone=dict(depth=101), bbox_head=dict(num_classes=3))
        optimizer = dict(_delete_=True, type='AdamW', lr=0.0001)
        lr_config = dict(step=[16, 22])
        work_dir = './work_dirs/exp'
    """,
}

WARM = """
import statistics, sys, time
{imp}
path = sys.argv[1]
Config.fromfile(path)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    cfg = Config.fromfile(path)
    times.append(time.perf_counter() - t)
assert cfg.model.backbone.depth == 101 and cfg.optimizer.type == 'AdamW' and 'momentum' not in cfg.optimizer
print(statistics.median(times))
"""
COLD = """
import sys, time
t = time.perf_counter()
{imp}
cfg = Config.fromfile(sys.argv[1])
print(time.perf_counter() - t)
"""
KILN_IMPORT = "from kiln.config import Config"
MM_IMPORT = "from mmengine.config import Config"


def _run(python: str, template: str, imp: str, *args: str) -> float:
    code = template.format(imp=imp)
    out = subprocess.run([python, "-c", code, *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{python} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def _mm_python(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    probe = subprocess.run([sys.executable, "-c", "import mmengine"], capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def main() -> None:
    """Write the config, time both libraries, print a table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50, help="warm loads per process")
    parser.add_argument("--cold", type=int, default=5, help="fresh interpreters for cold timing")
    parser.add_argument("--mm-python", default=None, help="interpreter that has mmengine")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in FILES.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text).lstrip("\n"))
        exp = os.path.join(tmp, "exp.py")
        mm = _mm_python(args.mm_python)
        rows = {"kiln": (sys.executable, KILN_IMPORT)}
        if mm:
            rows["mmengine"] = (mm, MM_IMPORT)
        warm: dict[str, float] = {}
        cold: dict[str, list[float]] = {k: [] for k in rows}
        for name, (py, imp) in rows.items():
            warm[name] = _run(py, WARM, imp, exp, str(args.repeat))
        for _ in range(args.cold):  # alternate so noise hits both alike
            for name, (py, imp) in rows.items():
                cold[name].append(_run(py, COLD, imp, exp))

    print(f"4-file, 3-format inherited config; warm = median of {args.repeat} loads, "
          f"cold = median of {args.cold} fresh interpreters (import + load)")
    for name in rows:
        cold_ms = statistics.median(cold[name]) * 1e3
        print(f"{name:<9} warm {warm[name] * 1e3:8.2f} ms/load   cold {cold_ms:8.1f} ms")
    if mm:
        wr = warm["kiln"] / warm["mmengine"]
        cr = statistics.median(cold["kiln"]) / statistics.median(cold["mmengine"])
        print(f"ratio kiln/mmengine: warm {wr:.3f}  cold {cr:.3f}  (goal <= 0.5)")
    else:
        print("mmengine not available (install the 'bench' extra or pass --mm-python); "
              "absolute kiln numbers only")


if __name__ == "__main__":
    main()
