"""``kiln config print|dump|diff``: the resolved config (bases merged, overrides applied).

``--canonical`` shows the config translated into the canonical run schema (what ``kiln train`` and
``Runner.from_cfg`` build from): MMCV/MMDetection 2.x keys and Detectron2 yaml are mapped to
``train_dataloader``, ``train_cfg``, ``optim_wrapper``, ``param_scheduler``, ``default_hooks``, ...
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_override_args, load_canonical_config, load_config, user_errors
from .errors import CLIError

__all__ = ["add_parser", "run", "diff_configs"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln config``."""
    p = sub.add_parser(name, help="print, dump or diff resolved configs",
                       description="Show a config with its _base_ files merged and overrides applied.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    canonical_help = ("translate into the canonical run schema first (what kiln train builds from; "
                      "MMCV/MMDetection 2.x and Detectron2 keys mapped to MMEngine's)")
    pp = actions.add_parser("print", help="print the resolved config as Python")
    pp.add_argument("config", help="config file or kiln:: name")
    pp.add_argument("--canonical", action="store_true", help=canonical_help)
    add_override_args(pp)
    pd = actions.add_parser("dump", help="write the resolved config to a .py/.json/.yaml file")
    pd.add_argument("config")
    pd.add_argument("out", help="destination; the format follows the suffix")
    pd.add_argument("--canonical", action="store_true", help=canonical_help)
    add_override_args(pd)
    pf = actions.add_parser("diff", help="show keys that differ between two resolved configs")
    pf.add_argument("config_a")
    pf.add_argument("config_b")
    pf.add_argument("--canonical", action="store_true", help=canonical_help + "; compares across dialects")
    add_override_args(pf)
    return p


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k in sorted(node, key=str):
            out.update(_flatten(node[k], f"{prefix}.{k}" if prefix else str(k)))
        if not node and prefix:
            out[prefix] = {}
    else:
        out[prefix] = node
    return out


def diff_configs(a: Any, b: Any) -> list[str]:
    """Lines ``- key: old`` / ``+ key: new`` for every dotted key that differs (sorted by key)."""
    fa, fb = _flatten(a.to_dict() if hasattr(a, "to_dict") else dict(a)), \
        _flatten(b.to_dict() if hasattr(b, "to_dict") else dict(b))
    lines = []
    for key in sorted(set(fa) | set(fb)):
        if key in fa and key in fb and fa[key] == fb[key]:
            continue
        if key in fa:
            lines.append(f"- {key}: {fa[key]!r}")
        if key in fb:
            lines.append(f"+ {key}: {fb[key]!r}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln config ACTION``."""
    load = load_canonical_config if args.canonical else load_config
    if args.action == "print":
        cfg = load(args.config, args.cfg_options, args.opts)
        print(cfg.pretty_text)
        return 0
    if args.action == "dump":
        cfg = load(args.config, args.cfg_options, args.opts)
        if not args.out.endswith((".py", ".json", ".yaml", ".yml")):
            raise CLIError(f"cannot dump to '{args.out}': use a .py, .json or .yaml file name")
        with user_errors(f"cannot write '{args.out}'"):
            cfg.dump(args.out)
        print(f"wrote {args.out}")
        return 0
    a = load(args.config_a, args.cfg_options, args.opts)
    b = load(args.config_b, args.cfg_options, args.opts)
    lines = diff_configs(a, b)
    print("\n".join(lines) if lines else "configs are identical")
    return 0
