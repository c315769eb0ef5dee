"""``kiln fewshot SPEC``: DeFRCN's whole few-shot workflow (its ``run_voc.sh``/``run_coco.sh``) in one
resumable command.

Steps: base training → model surgery → one fine-tune per (repeat, shot, seed) → PCB test of each →
the per-shot summary (``kiln summarize --res-dir``). Every step is skipped when its output exists
(``base/model_final.pth``, the surgery file, a run's ``inference/res_final.json``); an interrupted
training resumes from its last checkpoint. So the same command, run again after any interruption,
finishes the sweep without redoing finished runs. One progress line is printed per run.

The spec (yaml)::

    dataset: voc                 # voc (split 1/2/3), coco, or a COCO-format dataset:
    #  {name: shapes, train_json: ..., train_images: ..., test_json: ..., test_images: ...,
    #   base_classes: [...], novel_classes: [...], seed_root: DIR}   (seed files generated if missing)
    split: 1                     # VOC only
    setting: fsod                # fsod (novel classes only) or gfsod (base + novel)
    shots: [1, 2, 3, 5, 10]
    seeds: [0]                   # sampled K-shot sets
    repeats: 10                  # runs per (shot, seed) (DeFRCN's "fsrw-like": seed 0 ten times); default 1
    base_config: configs/voc/defrcn_det_r101_base1.yaml
    finetune_config: configs/voc/defrcn_fsod_r101_novelx_{shot}shot_seedx.yaml   # {shot} is filled in
    surgery: remove              # default: remove (fsod), randinit (gfsod)
    pcb_model: /weights/resnet101-5d3b4d8f.pth    # TEST.PCB_MODELPATH of the fine-tunes
    work_dir: checkpoints/voc/defrcn
    keep_final: false            # delete each fine-tune's model_final.pth after its test (run_voc.sh's rm)
    evaluate_base: true          # evaluate the base model on the base test set
    opts: [SEED, 0]              # KEY VALUE overrides for every run
    base_opts: []                # ... for base training only
    finetune_opts: []            # ... for the fine-tunes only
    imports: []                  # modules to import first (your own dataset registrations)

The sweep sets ``DATASETS.TRAIN``/``DATASETS.TEST``, ``MODEL.WEIGHTS`` and ``OUTPUT_DIR`` of each run
(what ``create_config.py`` and ``run_voc.sh`` set); everything else comes from the configs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "load_spec", "SPEC_KEYS"]

SPEC_KEYS = {"dataset", "split", "setting", "shots", "seeds", "repeats", "base_config", "finetune_config",
             "surgery", "pcb_model", "work_dir", "keep_final", "evaluate_base", "opts", "base_opts",
             "finetune_opts", "imports"}
_DATASET_KEYS = {"name", "train_json", "train_images", "test_json", "test_images", "base_classes",
                 "novel_classes", "seed_root"}


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln fewshot``."""
    p = sub.add_parser(name, help="run DeFRCN's few-shot sweep (base, surgery, fine-tunes, PCB test, "
                                  "summary), resumable", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="the sweep's yaml spec")
    return p


def load_spec(path: str) -> dict[str, Any]:
    """Read and check a sweep spec (paths are relative to the spec's folder)."""
    import yaml

    if not os.path.isfile(path):
        raise CLIError(f"spec '{path}' does not exist")
    with open(path) as f:
        spec = yaml.safe_load(f) or {}
    if not isinstance(spec, dict):
        raise CLIError(f"spec '{path}' must be a mapping of keys ({', '.join(sorted(SPEC_KEYS))})")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise CLIError(f"spec '{path}': unknown keys {unknown}; known: {sorted(SPEC_KEYS)}")
    for key in ("dataset", "shots", "base_config", "finetune_config", "work_dir"):
        if key not in spec:
            raise CLIError(f"spec '{path}' has no '{key}'")
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    spec.setdefault("setting", "fsod")
    if spec["setting"] not in ("fsod", "gfsod"):
        raise CLIError(f"spec '{path}': setting must be fsod or gfsod, got {spec['setting']!r}")
    spec.setdefault("seeds", [0])
    spec.setdefault("repeats", 1)
    spec.setdefault("surgery", "remove" if spec["setting"] == "fsod" else "randinit")
    if spec["surgery"] not in ("remove", "randinit"):
        raise CLIError(f"spec '{path}': surgery must be remove or randinit, got {spec['surgery']!r}")
    if int(spec["repeats"]) < 1:
        raise CLIError(f"spec '{path}': repeats must be >= 1, got {spec['repeats']}")
    for key in ("base_config", "finetune_config", "work_dir"):
        spec[key] = rel(str(spec[key]))
    if spec.get("pcb_model"):
        spec["pcb_model"] = rel(str(spec["pcb_model"]))
    for key in ("opts", "base_opts", "finetune_opts"):
        spec[key] = [str(v) for v in spec.get(key) or []]
        if len(spec[key]) % 2:
            raise CLIError(f"spec '{path}': {key} must be KEY VALUE pairs, got {spec[key]}")
    ds = spec["dataset"]
    if isinstance(ds, dict):
        unknown = sorted(set(ds) - _DATASET_KEYS)
        missing = sorted(_DATASET_KEYS - {"seed_root"} - set(ds))
        if unknown or missing:
            raise CLIError(f"spec '{path}': dataset has unknown keys {unknown} / lacks {missing}; a "
                           f"COCO-format dataset needs {sorted(_DATASET_KEYS)} (seed_root optional)")
        for key in ("train_json", "train_images", "test_json", "test_images", "seed_root"):
            if ds.get(key):
                ds[key] = rel(str(ds[key]))
        ds.setdefault("seed_root", os.path.join(spec["work_dir"], "splits"))
    elif ds == "voc":
        if int(spec.get("split", 1)) not in (1, 2, 3):
            raise CLIError(f"spec '{path}': split must be 1, 2 or 3 for voc, got {spec.get('split')}")
        spec["split"] = int(spec.get("split", 1))
    elif ds != "coco":
        raise CLIError(f"spec '{path}': dataset must be voc, coco or a mapping describing a COCO-format "
                       f"dataset, got {ds!r}")
    return spec


def _names(spec: dict[str, Any]) -> dict[str, Any]:
    """Dataset names of each step, and the surgery's ``--dataset``, for the spec's dataset."""
    ds, part = spec["dataset"], "novel" if spec["setting"] == "fsod" else "all"
    if ds == "voc":
        s = spec["split"]
        return dict(base_train=[f"voc_2007_trainval_base{s}", f"voc_2012_trainval_base{s}"],
                    base_test=f"voc_2007_test_base{s}", test=f"voc_2007_test_{part}{s}",
                    train=lambda k, seed: f"voc_2007_trainval_{part}{s}_{k}shot_seed{seed}", surgery="voc")
    if ds == "coco":
        return dict(base_train=["coco14_trainval_base"], base_test="coco14_test_base",
                    test=f"coco14_test_{part}",
                    train=lambda k, seed: f"coco14_trainval_{part}_{k}shot_seed{seed}", surgery="coco")
    n = ds["name"]
    return dict(base_train=[f"{n}_trainval_base"], base_test=f"{n}_test_base", test=f"{n}_test_{part}",
                train=lambda k, seed: f"{n}_trainval_{part}_{k}shot_seed{seed}", surgery=None)


def _register(spec: dict[str, Any]) -> None:
    ds = spec["dataset"]
    if not isinstance(ds, dict):
        return  # DeFRCN's built-in names (kiln.data.fewshot)
    from kiln.data.fewshot import generate_coco_seed_files, register_fewshot_coco

    classes = list(ds["base_classes"]) + list(ds["novel_classes"])
    seeds = sorted({int(s) for s in spec["seeds"]})
    shots = [int(k) for k in spec["shots"]]
    marker = Path(ds["seed_root"]) / ".kiln_seed_files.json"
    want = {"shots": shots, "seeds": seeds, "classes": classes, "train_json": ds["train_json"]}
    cache = os.path.join(spec["work_dir"], "datasets")
    if not marker.is_file() or json.loads(marker.read_text()) != want:
        generate_coco_seed_files(ds["train_json"], ds["seed_root"], shots, seeds, classes)
        shutil.rmtree(cache, ignore_errors=True)  # K-shot sets written from earlier seed files
        marker.write_text(json.dumps(want))
    register_fewshot_coco(ds["name"], ds["train_json"], ds["train_images"], ds["test_json"],
                          ds["test_images"], ds["base_classes"], ds["novel_classes"], ds["seed_root"], shots,
                          seeds, cache_dir=cache)


def _tuple(names: list[str]) -> str:
    return "(" + "".join(f"'{n}', " for n in names) + ")"


def _kiln(argv: list[str], what: str) -> None:
    from .main import main

    code = main(argv)
    if code != 0:
        raise CLIError(f"{what} failed (exit code {code}): kiln {' '.join(argv)}")


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """The run's final evaluation, or None while it has none (a file cut short counts as none)."""
    path = run_dir / "inference" / "res_final.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(metrics: dict[str, Any]) -> str:
    keys = [k for k in ("bbox/nAP", "bbox/nAP50", "bbox/bAP", "bbox/AP") if k in metrics]
    return " ".join(f"{k.split('/')[-1]}={float(metrics[k]):.2f}" for k in keys)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln fewshot``."""
    spec = load_spec(args.spec)
    if spec.get("imports"):
        from .common import import_plugins

        import_plugins(list(spec["imports"]))
    _register(spec)
    names = _names(spec)
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    opts = spec["opts"]

    # ---- base training
    base_dir = work / "base"
    t0 = time.time()
    if (base_dir / "model_final.pth").is_file():
        print(f"[base] {base_dir}: finished earlier, skipped", flush=True)
    else:
        test = _tuple([names["base_test"]]) if spec.get("evaluate_base", True) else "()"
        _kiln(["train", "--config-file", spec["base_config"], "--resume", *opts, *spec["base_opts"],
               "DATASETS.TRAIN", _tuple(names["base_train"]), "DATASETS.TEST", test,
               "OUTPUT_DIR", str(base_dir)], "base training")
        print(f"[base] {base_dir}: trained ({time.time() - t0:.0f}s)", flush=True)

    # ---- model surgery
    method = spec["surgery"]
    weights = base_dir / f"model_reset_{'remove' if method == 'remove' else 'surgery'}.pth"
    if weights.is_file():
        print(f"[surgery] {weights}: done earlier, skipped", flush=True)
    else:
        extra: list[str] = []
        if method == "randinit":
            if names["surgery"]:
                extra = ["--dataset", names["surgery"]]
            else:
                ds = spec["dataset"]
                extra = ["--num-classes", str(len(ds["base_classes"]) + len(ds["novel_classes"])),
                         "--keep-classes", "all"]
        _kiln(["surgery", "--method", method, "--src-path", str(base_dir / "model_final.pth"),
               "--save-dir", str(base_dir), *extra], "model surgery")
        print(f"[surgery] {weights}: written ({method})", flush=True)

    # ---- fine-tunes + PCB test
    res_dir = work / spec["setting"]
    runs = [(r, int(k), int(s)) for r in range(int(spec["repeats"]))
            for k in spec["shots"] for s in spec["seeds"]]
    pcb = ["TEST.PCB_MODELPATH", spec["pcb_model"]] if spec.get("pcb_model") else []
    for i, (rep, shot, seed) in enumerate(runs, start=1):
        tag = f"{shot}shot_seed{seed}" + (f"_repeat{rep}" if int(spec["repeats"]) > 1 else "")
        run_dir = res_dir / tag
        head = f"[{i}/{len(runs)}] {spec['setting']} {tag}"
        done = _finished(run_dir)
        if done is not None:
            if not spec.get("keep_final", False):  # a run stopped between its test and this deletion
                (run_dir / "model_final.pth").unlink(missing_ok=True)
            print(f"{head}: finished earlier, skipped  {_fmt(done)}", flush=True)
            continue
        t0 = time.time()
        cfg = spec["finetune_config"].replace("{shot}", str(shot))
        common = [*opts, *spec["finetune_opts"], *pcb, "DATASETS.TRAIN", _tuple([names["train"](shot, seed)]),
                  "OUTPUT_DIR", str(run_dir)]
        if not (run_dir / "model_final.pth").is_file():
            _kiln(["train", "--config-file", cfg, "--resume", *common, "MODEL.WEIGHTS", str(weights),
                   "DATASETS.TEST", "()"], f"fine-tune {tag}")
        _kiln(["train", "--config-file", cfg, "--eval-only", *common, "DATASETS.TEST",
               _tuple([names["test"]])], f"test of {tag}")
        done = _finished(run_dir)
        if done is None:
            raise CLIError(f"test of {tag} wrote no {run_dir / 'inference' / 'res_final.json'}")
        if not spec.get("keep_final", False):
            (run_dir / "model_final.pth").unlink(missing_ok=True)
        print(f"{head}: done ({time.time() - t0:.0f}s)  {_fmt(done)}", flush=True)

    # ---- summary
    from .summarize import shot_tables

    table = shot_tables(res_dir, sorted({int(k) for k in spec["shots"]}))
    (res_dir / "results.txt").write_text(table + "\n")
    print(table)
    print(f"summary -> {res_dir / 'results.txt'}")
    return 0
