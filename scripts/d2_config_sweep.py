"""Train and evaluate every box-detection yaml of Detectron2's own config tree, through ``kiln train`` and
through ``DefaultTrainer``, on small generated data registered under the names the files use.

    PYTHONPATH=. .venv/bin/python scripts/d2_config_sweep.py [--filter SUBSTR] [--iters 2] [--no-trainer]

The files are the vendored copies in tests/fixtures/detectron2_configs (COCO-Detection, PascalVOC-Detection,
Detectron1-Comparisons; mask/keypoint/segmentation files are refused by name and listed as such). Each run
is shrunk on the command line only (2 iterations, 64-pixel images, no ImageNet download, CPU); everything
else (depth, C4/DC5/FPN, RPN-only, Fast R-CNN from proposal files, schedules, anchors) is the file's.
Prints one line per file and path, and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
import traceback

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, "tests"))
CONFIGS = osp.join(ROOT, "tests", "fixtures", "detectron2_configs")
BOX_DIRS = ("COCO-Detection", "PascalVOC-Detection", "Detectron1-Comparisons")


def _register(root: str) -> dict[str, str]:
    """Generated data under the names the yaml files use; returns proposal files per split."""
    from upstream_helpers import make_mini_coco, make_mini_proposals, make_mini_voc

    from kiln.data import DatasetCatalog, MetadataCatalog
    from kiln.data.datasets import register_coco_instances
    from kiln.data.datasets.pascal_voc import register_pascal_voc

    coco = make_mini_coco(osp.join(root, "coco"), num_train=4, num_val=2, size=64)
    make_mini_proposals(coco, layout="detectron2")
    names = ("coco_2017_train", "coco_2017_val", "voc_2007_trainval", "voc_2012_trainval", "voc_2007_test")
    for name in names:
        if name in DatasetCatalog.list():  # the built-in names point at $DETECTRON2_DATASETS
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    for split in ("train", "val"):
        ann = osp.join(coco, f"annotations/instances_{split}2017.json")
        register_coco_instances(f"coco_2017_{split}", {}, ann, osp.join(coco, f"{split}2017"))
    voc = make_mini_voc(osp.join(root, "voc"), years=("2007", "2012"), num_train=2, num_test=2, size=64)
    register_pascal_voc("voc_2007_trainval", osp.join(voc, "VOC2007"), "trainval", 2007)
    register_pascal_voc("voc_2012_trainval", osp.join(voc, "VOC2012"), "trainval", 2012)
    register_pascal_voc("voc_2007_test", osp.join(voc, "VOC2007"), "test", 2007)
    return {s: osp.join(coco, "proposals", f"rpn_r50_fpn_1x_{s}2017.pkl") for s in ("train", "val")}


def _opts(out: str, iters: int, proposals: dict[str, str], load_proposals: bool) -> list[str]:
    # (random weights under FrozenBN: the files' learning rates diverge in two steps without ImageNet
    # weights, R101 even at 1e-4; a small rate and total-norm clipping keep the shrunk runs finite)
    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.BASE_LR", "0.0001", "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "1.0",
            "SOLVER.MAX_ITER", str(iters),
            "SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", str(iters),
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0",
            "OUTPUT_DIR", out, "SEED", "1"]
    if load_proposals:
        opts += ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{proposals['train']}',)",
                 "DATASETS.PROPOSAL_FILES_TEST", f"('{proposals['val']}',)"]
    return opts


def _metrics(out: str) -> dict:
    path = osp.join(out, "metrics.json")
    records = [json.loads(line) for line in open(path, encoding="utf-8")] if osp.isfile(path) else []
    losses = [r for r in records if "total_loss" in r or "loss" in r]
    evals = [r for r in records if any(k.startswith(("bbox/", "AR@")) for k in r)]
    return dict(losses=bool(losses), eval=evals[-1] if evals else None)


def _flat(results: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in results.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return {k.split("/", 1)[1] if k.count("/") > 1 else k: v for k, v in out.items()}


def _cli(path: str, out: str, opts: list[str]) -> None:
    """``kiln train``: evaluation results are read back from metrics.json."""
    from kiln.cli import main

    if main(["train", "--config-file", path, *opts]) != 0:
        raise RuntimeError("kiln train exited non-zero")


def _trainer(path: str, out: str, opts: list[str]) -> dict | None:
    from kiln.cli.d2_config import add_fewshot_defaults
    from kiln.config import get_cfg
    from kiln.engine import DefaultTrainer

    cfg = add_fewshot_defaults(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list(opts)
    cfg.freeze()
    os.makedirs(out, exist_ok=True)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer.train()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--no-trainer", action="store_true", help="only the kiln train path")
    args = parser.parse_args()
    os.environ.setdefault("KILN_OFFLINE", "1")
    from kiln.config import get_cfg

    files = sorted(osp.relpath(osp.join(d, f), CONFIGS) for d, _, fs in os.walk(CONFIGS) for f in fs
                   if f.endswith(".yaml") and osp.relpath(d, CONFIGS).startswith(BOX_DIRS))
    files = [f for f in files if args.filter in f]
    tmp = tempfile.mkdtemp(prefix="d2sweep_")
    proposals = _register(tmp)
    paths = [("kiln train", _cli)] + ([] if args.no_trainer else [("DefaultTrainer", _trainer)])
    ok = refused = failed = 0
    for rel in files:
        node = get_cfg()
        node.merge_from_file(osp.join(CONFIGS, rel))
        if node.MODEL.MASK_ON or node.MODEL.KEYPOINT_ON:
            print(f"{rel:<58} refused by name (mask/keypoint head)")
            refused += 1
            continue
        for label, run in paths:
            out = osp.join(tmp, "runs", rel.replace("/", "_"), label.replace(" ", "_"))
            t0 = time.perf_counter()
            try:
                returned = run(osp.join(CONFIGS, rel), out,
                               _opts(out, args.iters, proposals, bool(node.MODEL.LOAD_PROPOSALS)))
                m = _metrics(out)
                if returned:  # DefaultTrainer.train()'s results
                    m["eval"] = _flat(returned)
                figure_keys = [k for k in (m["eval"] or {}) if "bbox/AP" in k or "AR@" in k]
                if not m["losses"] or not figure_keys:
                    raise RuntimeError(f"no {'losses' if not m['losses'] else 'evaluation'} in metrics.json")
                final = osp.isfile(osp.join(out, "model_final.pth"))
                figures = {"/".join(k.split("/")[-2:]) if "bbox/" in k else k.rsplit("/", 1)[-1]:
                           round(m["eval"][k], 2) for k in figure_keys}
                took = time.perf_counter() - t0
                print(f"{rel:<58} {label:<15} ok   {took:5.1f} s  model_final.pth={final} "
                      f"{dict(list(figures.items())[:3])}")
                ok += 1
            except Exception as e:  # noqa: BLE001 - the sweep reports every failure and goes on
                failed += 1
                print(f"{rel:<58} {label:<15} FAIL {time.perf_counter() - t0:5.1f} s  {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:150]}")
                if os.environ.get("KILN_DEBUG"):
                    traceback.print_exc()
            finally:
                shutil.rmtree(out, ignore_errors=True)  # checkpoints of R101 runs are ~0.5 GB each
    print(f"\n{len(files)} files: {ok} runs train+evaluate, {failed} runs failed, "
          f"{refused} files refused by name")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
