"""Few-shot workflow helpers: K-shot subsets + per-shot/per-seed configs, and freezing modules.

``kiln gen-fewshot-configs BASE --shots 1 5 10 --seeds 0 1 2 --out-dir DIR`` writes, for every
(shot, seed):

* ``DIR/data/{shot}shot_seed{seed}.json``: a COCO subset of BASE's training annotations with exactly
  ``shot`` instances per class where the data allows (TFA-style sampling: for each class, images
  holding that class are drawn in a seeded order and added while the class count stays <= shot;
  only that class's annotations are kept from an image drawn for it);
* ``DIR/{name}_{shot}shot_seed{seed}.py``: ``_base_ = BASE`` with ``data.train`` on that subset,
  ``work_dir = WORK_ROOT/{shot}shot_seed{seed}`` (the layout ``kiln summarize`` groups by), the seed,
  and optional ``load_from`` (a ``kiln surgery`` output) and ``frozen_modules``.

DeFRCN's ``tools/create_config.py`` form, ``kiln gen-fewshot-configs --dataset voc --config_root DIR
--shot K --seed S --setting fsod|gfsod --split N``, reads the template
``DIR/defrcn_{setting}_r101_novelx_{K}shot_seedx.yaml`` (COCO, ``--dataset coco14``:
``defrcn_{setting}_r101_novel_{K}shot_seedx.yaml``), sets ``DATASETS.TRAIN`` to the K-shot set
(``voc_2007_trainval_{novel|all}{N}_{K}shot_seed{S}``; COCO ``coco14_trainval_{novel|all}_{K}shot_seed{S}``)
and, for VOC, ``DATASETS.TEST`` to ``voc_2007_test_{novel|all}{N}``, and writes it as
``defrcn_{setting}_r101_novel{N}_{K}shot_seed{S}.yaml`` (COCO: ``..._novel_{K}shot_seed{S}.yaml``) next to
the template: the names DeFRCN's ``run_voc.sh``/``run_coco.sh`` then train.

``frozen_modules`` (a list of dotted module paths, e.g. ``['backbone', 'rpn_head']``) is honoured
by the runner builder (``kiln train`` and ``Runner.from_cfg`` alike): :func:`freeze_modules` sets
``requires_grad=False`` on their parameters and keeps them in eval mode (BatchNorm statistics frozen
too) after the optimizer is built and before the model is wrapped for DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from kiln.config.dialects.canonical import FREEZE_GROUPS

from .common import load_config, user_errors
from .errors import CLIError

__all__ = ["add_parser", "run", "sample_kshot", "freeze_modules", "FREEZE_GROUPS"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln gen-fewshot-configs``."""
    p = sub.add_parser(name, help="write K-shot data subsets and per-shot/per-seed configs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=None, help="base config (its data.train is subsampled)")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out-dir", default=None)
    d = p.add_argument_group("DeFRCN's create_config.py (instead of CONFIG)")
    d.add_argument("--dataset", choices=["voc", "coco14", "coco"], default=None)
    d.add_argument("--config_root", "--config-root", dest="config_root", default=None,
                   help="folder of DeFRCN's *_seedx.yaml templates; the config is written there")
    d.add_argument("--shot", type=int, default=1)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--setting", choices=["fsod", "gfsod"], default="fsod")
    d.add_argument("--split", type=int, default=1, help="VOC split 1, 2 or 3")
    p.add_argument("--work-root", default=None, help="parent of the runs' work_dirs (default: OUT_DIR/runs)")
    p.add_argument("--load-from", default=None, help="checkpoint to fine-tune from (e.g. a surgery output)")
    p.add_argument("--freeze", nargs="*", default=[], metavar="PART",
                   help=f"freeze these parts while fine-tuning: {', '.join(FREEZE_GROUPS)} or module paths")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="extra overrides written into every generated config; '{shot}' and '{seed}' in a "
                        "value are replaced, e.g. total_epochs={shot}")
    return p


def sample_kshot(coco: dict[str, Any], shot: int, seed: int) -> dict[str, Any]:
    """A COCO dict with at most ``shot`` instances per category (exactly ``shot`` when possible)."""
    if shot < 1:
        raise CLIError(f"shot must be >= 1, got {shot}")
    rng = random.Random(seed)
    by_cat_img: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            by_cat_img[ann["category_id"]][ann["image_id"]].append(ann)
    keep: list[dict] = []
    for cat in sorted(c["id"] for c in coco["categories"]):
        images = sorted(by_cat_img.get(cat, {}))
        rng.shuffle(images)
        count = 0
        for img_id in images:
            anns = by_cat_img[cat][img_id]
            if count + len(anns) > shot:
                continue
            keep.extend(anns)
            count += len(anns)
            if count == shot:
                break
    img_ids = {a["image_id"] for a in keep}
    return {
        **{k: v for k, v in coco.items() if k not in ("images", "annotations")},
        "images": [im for im in coco["images"] if im["id"] in img_ids],
        "annotations": sorted(keep, key=lambda a: a["id"]),
    }


def freeze_modules(model: Any, names: list[str]) -> list[str]:
    """:func:`kiln.models.freeze.freeze_modules`, with a bad path reported as a :class:`CLIError`."""
    from kiln.models.freeze import freeze_modules as _freeze

    try:
        return _freeze(model, names)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from exc


def _train_source(cfg: Any) -> tuple[str, str, list[str], list]:
    """(ann_file, img_prefix, classes, pipeline) of the config's training set."""
    from kiln.registry import DATASETS

    train = cfg.data.train
    while train.get("type") in ("RepeatDataset", "ClassBalancedDataset") and "dataset" in train:
        train = train.dataset
    with user_errors("cannot build data.train"):
        ds_cfg = dict(train)
        pipeline = ds_cfg.get("pipeline", [])
        ds_cfg["pipeline"] = []
        dataset = DATASETS.build(ds_cfg, cfg_path="data.train")
    ann_file = getattr(dataset, "ann_file", None)
    if not ann_file or not str(ann_file).endswith(".json"):
        raise CLIError("gen-fewshot-configs needs a COCO-format data.train (CocoDataset, ShapesDataset, ...)")
    return str(ann_file), str(dataset.img_prefix or ""), list(dataset.CLASSES), list(pipeline)


def _fmt(value: Any, shot: int, seed: int) -> Any:
    from kiln.config import parse_value

    return parse_value(value.replace("{shot}", str(shot)).replace("{seed}", str(seed)))


def _set_line(lines: list[str], key: str, value: str, path: Path) -> None:
    """Replace the ``  KEY: ...`` line (two-space indent, under ``DATASETS:``) as create_config.py does."""
    hits = [i for i, line in enumerate(lines) if line.startswith(f"  {key}: ")]
    if not hits:
        raise CLIError(f"template '{path}' has no '  {key}: ...' line (under DATASETS:) to set")
    for i in hits:
        lines[i] = f"  {key}: {value}\n"


def create_defrcn_config(dataset: str, config_root: str, shot: int, seed: int, setting: str,
                         split: int) -> Path:
    """Write DeFRCN's per-(shot, seed) yaml from its ``seedx`` template; return the new file's path."""
    root = Path(config_root)
    part = "novel" if setting == "fsod" else "all"
    if dataset == "voc":
        if split not in (1, 2, 3):
            raise CLIError(f"--split must be 1, 2 or 3 for VOC, got {split}")
        template = root / f"defrcn_{setting}_r101_novelx_{shot}shot_seedx.yaml"
        out = root / f"defrcn_{setting}_r101_novel{split}_{shot}shot_seed{seed}.yaml"
        train = f'("voc_2007_trainval_{part}{split}_{shot}shot_seed{seed}", )'
        test: str | None = f'("voc_2007_test_{part}{split}",)'
    else:
        template = root / f"defrcn_{setting}_r101_novel_{shot}shot_seedx.yaml"
        out = root / f"defrcn_{setting}_r101_novel_{shot}shot_seed{seed}.yaml"
        train, test = f'("coco14_trainval_{part}_{shot}shot_seed{seed}", )', None
    if not template.is_file():
        raise CLIError(f"template '{template}' does not exist (DeFRCN's configs/{dataset}/ has one per "
                       f"setting and shot)")
    lines = template.read_text().splitlines(keepends=True)
    _set_line(lines, "TRAIN", train, template)
    if test is not None:
        _set_line(lines, "TEST", test, template)
    out.write_text("".join(lines))
    return out


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln gen-fewshot-configs``."""
    if args.config_root is not None or args.dataset is not None:
        if args.config is not None:
            raise CLIError("give CONFIG (kiln's generator) or --dataset/--config_root (DeFRCN's), not both")
        if args.config_root is None or args.dataset is None:
            raise CLIError("DeFRCN's form needs both --dataset and --config_root")
        path = create_defrcn_config("voc" if args.dataset == "voc" else "coco14", args.config_root,
                                    args.shot, args.seed, args.setting, args.split)
        print(path)
        return 0
    if args.config is None or args.out_dir is None:
        raise CLIError("give CONFIG --out-dir DIR (kiln's generator), or --dataset voc --config_root DIR "
                       "--shot K --seed S --setting fsod --split N (DeFRCN's create_config.py)")
    cfg = load_config(args.config)
    ann_file, img_prefix, classes, pipeline = _train_source(cfg)
    with open(ann_file) as f:
        coco = json.load(f)
    out = Path(args.out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    work_root = os.path.abspath(args.work_root or out / "runs")
    base = args.config if args.config.startswith("kiln::") else os.path.abspath(args.config)
    name = Path(args.config.split("::")[-1]).stem
    frozen = [p for part in args.freeze for p in FREEZE_GROUPS.get(part, [part])]
    if args.load_from and not os.path.isfile(args.load_from):
        raise CLIError(f"--load-from checkpoint '{args.load_from}' does not exist")
    for item in args.cfg_options:
        if "=" not in item:
            raise CLIError(f"--cfg-options entry '{item}' is not KEY=VALUE")
    written = []
    for shot in args.shots:
        for seed in args.seeds:
            tag = f"{shot}shot_seed{seed}"
            subset = sample_kshot(coco, shot, seed)
            subset_file = (out / "data" / f"{tag}.json").resolve()
            subset_file.write_text(json.dumps(subset))
            overrides: dict[str, Any] = {
                "data": {"train": {"_delete_": True, "type": "CocoDataset", "ann_file": str(subset_file),
                                   "img_prefix": img_prefix, "classes": classes, "pipeline": pipeline,
                                   "filter_empty_gt": True}},
                "work_dir": os.path.join(work_root, tag),
                "seed": seed,
            }
            if args.load_from:
                overrides["load_from"] = os.path.abspath(args.load_from)
            if frozen:
                overrides["frozen_modules"] = frozen
            extra = {k: _fmt(v, shot, seed) for k, v in (i.split("=", 1) for i in args.cfg_options)}
            lines = [f"# {shot}-shot fine-tuning config, sampling seed {seed}; written by "
                     f"`kiln gen-fewshot-configs`.", f"_base_ = {base!r}"]
            lines += [f"{k} = {v!r}" for k, v in overrides.items()]
            dotted = {k: v for k, v in extra.items() if "." in k}
            lines += [f"{k} = {v!r}" for k, v in extra.items() if "." not in k]
            path = out / f"{name}_{tag}.py"
            path.write_text("\n".join(lines) + "\n")
            if dotted:  # nested overrides: merge through the config engine so the file stays valid
                with user_errors(f"cannot apply --cfg-options to {path}"):
                    from kiln.config import Config

                    full = Config.fromfile(str(path), cfg_options=dotted)
                    full.dump(str(path))
            n_ann = len(subset["annotations"])
            written.append(path)
            print(f"{path}  ({len(subset['images'])} images, {n_ann} boxes)")
    print(f"wrote {len(written)} configs; train them with `kiln train CONFIG`, then "
          f"`kiln summarize {work_root}`")
    return 0
