"""``kiln surgery``: prepare a base-trained detector checkpoint for few-shot fine-tuning.

Following DeFRCN/TFA's ``model_surgery``:

* ``--method remove`` deletes the classification layers and the class-specific regression layers,
  so fine-tuning initializes them fresh for the new label set (class-agnostic regression layers,
  like RetinaNet's, carry no class identity and are kept);
* ``--method randinit`` replaces them with randomly initialized layers for ``--num-classes`` classes
  and copies the rows of the classes named by ``--keep-classes`` (``old:new`` pairs, or ``all`` for
  old class *i* → new class *i*), e.g. base classes kept and novel classes appended.

Everything else (backbone, neck, RPN, RoI feature layers) is kept. Optimizer, scheduler and loop
state are dropped, so training from the result starts at iteration 0.

DeFRCN's ``tools/model_surgery.py`` flags work as there::

    kiln surgery --dataset voc --method remove --src-path base/model_final.pth --save-dir base
    kiln surgery --dataset coco --method randinit --src-path base/model_final.pth --save-dir base

write ``SAVE_DIR/{TAR_NAME}_remove.pth`` / ``SAVE_DIR/{TAR_NAME}_surgery.pth`` (``--tar-name`` default
``model_reset``). With ``--dataset``, randinit maps the base classes into the all-class layers: VOC's 15
base classes stay rows 0..14 of 20 (a split's "all" order lists base classes first); COCO's 60 base
classes (contiguous in base order) go to their place among the 80 in COCO id order. ``--param-name``
names the layers exactly (e.g. ``roi_heads.box_predictor.cls_score``) instead of the patterns.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "DEFAULT_CLS_PATTERNS", "DEFAULT_REG_PATTERNS", "surgery"]

# Parameter-name patterns (regex on the module path, before .weight/.bias) of the predictor layers
# in kiln's RetinaNet/Faster R-CNN and in MMDetection/Detectron2 checkpoints.
DEFAULT_CLS_PATTERNS = [r"(^|\.)retina_cls$", r"(^|\.)conv_cls$", r"(^|\.)fc_cls$", r"(^|\.)cls_score$",
                        r"(^|\.)cls_logits$"]
DEFAULT_REG_PATTERNS = [r"(^|\.)retina_reg$", r"(^|\.)conv_reg$", r"(^|\.)fc_reg$", r"(^|\.)bbox_pred$",
                        r"(^|\.)bbox_reg$"]
_RPN_HINT = re.compile(r"(^|\.)rpn")


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln surgery``."""
    p = sub.add_parser(name, help="remove or re-initialize the class-specific layers of a checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=["remove", "randinit"], required=True)
    p.add_argument("--src", "--src-path", dest="src", required=True, help="base-trained checkpoint")
    p.add_argument("--out", default=None, help="where to write the new checkpoint")
    p.add_argument("--save-dir", default=None,
                   help="DeFRCN's output folder: writes SAVE_DIR/{TAR_NAME}_remove.pth or _surgery.pth")
    p.add_argument("--tar-name", default="model_reset", help="file name stem with --save-dir")
    p.add_argument("--dataset", choices=["voc", "coco"], default=None,
                   help="randinit: map base classes into the all-class layers as DeFRCN does (voc: 15 -> 20, "
                        "coco: 60 -> 80 in COCO id order); sets --num-classes and --keep-classes")
    p.add_argument("--param-name", nargs="+", default=None, metavar="NAME",
                   help="exact classification and regression layer names (module paths without .weight)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="randinit: number of (foreground) classes of the new layers")
    p.add_argument("--keep-classes", nargs="*", default=[], metavar="OLD:NEW",
                   help="randinit: copy these class rows from the old layers ('all' = i:i for every i)")
    p.add_argument("--cls-pattern", action="append", default=None,
                   help="regex of classification layer names (repeatable; default covers kiln/MM/D2)")
    p.add_argument("--reg-pattern", action="append", default=None,
                   help="regex of regression layer names (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="randinit: RNG seed of the new weights")
    return p


def _modules(state: dict[str, Any], patterns: list[str]) -> list[str]:
    mods = sorted({k.rsplit(".", 1)[0] for k in state if k.endswith((".weight", ".bias"))})
    regs = [re.compile(p) for p in patterns]
    return [m for m in mods if any(r.search(m) for r in regs) and not _RPN_HINT.search(m)]


def _rows(state: dict[str, Any], mod: str) -> int:
    return int(state[f"{mod}.weight"].shape[0])


def _layout(state: dict[str, Any], cls_mod: str, reg_mods: list[str]) -> tuple[str, int, int]:
    """(kind, anchors, classes) of a classification layer.

    ``'softmax'``: a Linear layer with C+1 rows, background last (MMDetection v2 / Detectron2);
    ``'sigmoid'``: a conv layer with A*C channels, class c of anchor a at row a*C + c, where A comes
    from the sibling regression conv (A*4 channels).
    """
    w = state[f"{cls_mod}.weight"]
    if w.dim() == 2:
        return "softmax", 1, int(w.shape[0]) - 1
    parent = cls_mod.rsplit(".", 1)[0] if "." in cls_mod else ""
    siblings = [r for r in reg_mods if (r.rsplit(".", 1)[0] if "." in r else "") == parent]
    if not siblings:
        raise CLIError(f"cannot tell the anchor count of conv layer '{cls_mod}': no regression conv "
                       f"next to it; pass --reg-pattern")
    anchors = _rows(state, siblings[0]) // 4
    if anchors == 0 or w.shape[0] % anchors:
        raise CLIError(f"'{cls_mod}' has {w.shape[0]} channels, not a multiple of {anchors} anchors")
    return "sigmoid", anchors, int(w.shape[0]) // anchors


def _class_rows(kind: str, anchors: int, classes: int, c: int) -> list[int]:
    return [a * classes + c for a in range(anchors)] if kind == "sigmoid" else [c]


def _parse_keep(keep: list[str], old: int, new: int) -> list[tuple[int, int]]:
    if keep == ["all"]:
        return [(i, i) for i in range(min(old, new))]
    pairs = []
    for item in keep:
        try:
            a, b = (int(x) for x in item.split(":"))
        except ValueError as exc:
            raise CLIError(f"--keep-classes entry '{item}' is not OLD:NEW (two integers) or 'all'") from exc
        if not (0 <= a < old and 0 <= b < new):
            raise CLIError(f"--keep-classes {item}: old class must be in [0, {old}) and new in [0, {new})")
        pairs.append((a, b))
    return pairs


def surgery(state: dict[str, Any], method: str, num_classes: int | None = None,
            keep: list[str] | None = None, cls_patterns: list[str] | None = None,
            reg_patterns: list[str] | None = None, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """Apply ``method`` to a model state dict; return the new state dict and a report (one line each)."""
    import torch

    cls_mods = _modules(state, cls_patterns or DEFAULT_CLS_PATTERNS)
    reg_mods = _modules(state, reg_patterns or DEFAULT_REG_PATTERNS)
    if not cls_mods:
        near = sorted({k.rsplit(".", 1)[0] for k in state if "cls" in k or "score" in k})[:8]
        raise CLIError(f"no classification layer matched {cls_patterns or DEFAULT_CLS_PATTERNS}; "
                       f"layers with 'cls'/'score' in their name: {near or 'none'}; pass --cls-pattern")
    out = dict(state)
    report: list[str] = []
    gen = torch.Generator().manual_seed(seed)
    for cls_mod in cls_mods:
        kind, anchors, old_c = _layout(state, cls_mod, reg_mods)
        parent = cls_mod.rsplit(".", 1)[0] if "." in cls_mod else ""
        regs = [r for r in reg_mods if (r.rsplit(".", 1)[0] if "." in r else "") == parent]
        # class-specific regression: 4 rows per class (Linear), e.g. Faster R-CNN's fc_reg
        specific = [r for r in regs if state[f"{r}.weight"].dim() == 2 and _rows(state, r) == 4 * old_c
                    and old_c > 1]
        if method == "remove":
            for mod in [cls_mod, *specific]:
                for suffix in (".weight", ".bias"):
                    out.pop(mod + suffix, None)
                report.append(f"removed {mod} ({kind}, {old_c} classes)")
            continue
        if num_classes is None or num_classes < 1:
            raise CLIError("--method randinit needs --num-classes N (the new number of classes)")
        pairs = _parse_keep(keep or [], old_c, num_classes)
        w_old = state[f"{cls_mod}.weight"]
        new_rows = anchors * num_classes if kind == "sigmoid" else num_classes + 1
        w = torch.empty((new_rows, *w_old.shape[1:]), dtype=w_old.dtype).normal_(0, 0.01, generator=gen)
        prior = -math.log((1 - 0.01) / 0.01) if kind == "sigmoid" else 0.0
        b = torch.full((new_rows,), prior, dtype=w_old.dtype)
        b_old = state.get(f"{cls_mod}.bias")
        if kind == "softmax":  # background row (last) is class-independent: keep it
            w[-1] = w_old[-1]
            if b_old is not None:
                b[-1] = b_old[-1]
        for a, c in pairs:
            old_rows = _class_rows(kind, anchors, old_c, a)
            for ro, rn in zip(old_rows, _class_rows(kind, anchors, num_classes, c)):
                w[rn] = w_old[ro]
                if b_old is not None:
                    b[rn] = b_old[ro]
        out[f"{cls_mod}.weight"] = w
        if b_old is not None:
            out[f"{cls_mod}.bias"] = b
        report.append(f"re-initialized {cls_mod}: {old_c} -> {num_classes} classes, kept {len(pairs)}")
        for r in specific:
            rw_old, rb_old = state[f"{r}.weight"], state.get(f"{r}.bias")
            rw = torch.empty((4 * num_classes, rw_old.shape[1]), dtype=rw_old.dtype).normal_(
                0, 0.001, generator=gen)
            rb = torch.zeros(4 * num_classes, dtype=rw_old.dtype)
            for a, c in pairs:
                rw[4 * c:4 * c + 4] = rw_old[4 * a:4 * a + 4]
                if rb_old is not None:
                    rb[4 * c:4 * c + 4] = rb_old[4 * a:4 * a + 4]
            out[f"{r}.weight"] = rw
            if rb_old is not None:
                out[f"{r}.bias"] = rb
            report.append(f"re-initialized {r}: {old_c} -> {num_classes} classes")
    return out, report


def _dataset_mapping(dataset: str) -> tuple[int, list[str]]:
    """(all-class count, ``OLD:NEW`` pairs) of DeFRCN's base -> all class mapping for ``dataset``."""
    if dataset == "voc":
        return 20, [f"{i}:{i}" for i in range(15)]
    from kiln.data.builtin_meta import COCO_CATEGORIES
    from kiln.data.fewshot.splits import COCO_NOVEL_IDS

    ids = [i for i, _ in COCO_CATEGORIES]
    base = [i for i in ids if i not in COCO_NOVEL_IDS]
    return 80, [f"{b}:{ids.index(c)}" for b, c in enumerate(base)]


def _output_path(args: argparse.Namespace) -> str:
    if args.out and args.save_dir:
        raise CLIError("give --out FILE or --save-dir DIR (DeFRCN's naming), not both")
    if args.save_dir:
        suffix = "remove" if args.method == "remove" else "surgery"
        return os.path.join(args.save_dir, f"{args.tar_name}_{suffix}.pth")
    if not args.out:
        raise CLIError("say where to write the result: --out FILE or --save-dir DIR")
    return args.out


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln surgery``."""
    import torch

    args.out = _output_path(args)
    if args.dataset and args.method == "randinit":
        if args.num_classes is not None or args.keep_classes:
            raise CLIError("--dataset sets --num-classes and --keep-classes (DeFRCN's base -> all mapping); "
                           "give one or the other")
        args.num_classes, args.keep_classes = _dataset_mapping(args.dataset)
    if args.param_name:
        if args.cls_pattern or args.reg_pattern:
            raise CLIError("--param-name names the layers exactly; do not combine it with --cls-pattern/"
                           "--reg-pattern")
        cls_names = [n for n in args.param_name if "cls" in n or "score" in n]
        args.cls_pattern = [f"^{re.escape(n)}$" for n in cls_names]
        # exactly the named layers: no regression layer when none is named ("(?!)" matches nothing)
        args.reg_pattern = [f"^{re.escape(n)}$" for n in args.param_name if n not in cls_names] or ["(?!)"]
        if not cls_names:
            raise CLIError(f"--param-name {args.param_name}: none is a classification layer (a name with "
                           f"'cls' or 'score')")
    if not os.path.isfile(args.src):
        raise CLIError(f"--src/--src-path checkpoint '{args.src}' does not exist")
    try:
        ckpt = torch.load(args.src, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a checkpoint"
        raise CLIError(f"cannot read checkpoint '{args.src}': {exc}") from exc
    key = next((k for k in ("model", "state_dict")
                if isinstance(ckpt, dict) and isinstance(ckpt.get(k), dict)), None)
    state = ckpt[key] if key else ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CLIError(f"'{args.src}' holds no model state dict (looked for 'model', 'state_dict' or a bare "
                       f"dict of tensors)")
    new_state, report = surgery(state, args.method, args.num_classes, args.keep_classes,
                                args.cls_pattern, args.reg_pattern, args.seed)
    meta = dict(ckpt.get("meta", {})) if key and isinstance(ckpt.get("meta"), dict) else {}
    meta["surgery"] = {"method": args.method, "src": os.path.abspath(args.src),
                       "num_classes": args.num_classes, "changes": report}
    out = {key or "model": new_state, "meta": meta}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    torch.save(out, tmp)
    os.replace(tmp, args.out)
    for line in report:
        print(line)
    print(f"wrote {args.out}")
    return 0
