"""``kiln registry list [REGISTRY]``: what is registered, and where each entry is defined."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "root_registries"]


def root_registries() -> dict[str, Any]:
    """Name → root registry (distinct objects only; MODELS aliases are listed once)."""
    from kiln import registry as reg

    out: dict[str, Any] = {}
    for attr in reg.__all__:
        obj = getattr(reg, attr)
        if isinstance(obj, reg.Registry) and all(obj is not o for o in out.values()):
            out[obj.name] = obj
    return out


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln registry``."""
    p = sub.add_parser(name, help="list registries and their entries")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    pl = actions.add_parser("list", help="list registries, or the entries of one registry")
    pl.add_argument("registry", nargs="?", help="registry name, e.g. model, hook, transform")
    pl.add_argument("--plugins", action="store_true", help="load kiln.plugins entry points first")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln registry list``."""
    from kiln.registry import load_plugins

    if args.plugins:
        load_plugins()
    regs = root_registries()
    if args.registry is None:
        print(f"{'registry':<18} {'entries':>7}  imports")
        for name, reg in regs.items():
            print(f"{name:<18} {len(reg):>7}  {', '.join(reg._locations)}")
        return 0
    aliases = {"backbone": "model", "neck": "model", "head": "model", "detector": "model", "loss": "model"}
    q = args.registry.lower()
    # accept plurals and MM-style names: 'hooks', 'losses', 'BACKBONES'
    candidates = [q, q[:-1] if q.endswith("s") else q, q[:-2] if q.endswith("es") else q]
    candidates = [aliases.get(c, c) for c in candidates]
    key = next((c for c in candidates if c in regs), q)
    if key not in regs:
        close = difflib.get_close_matches(args.registry, list(regs), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CLIError(f"no registry named '{args.registry}'.{hint} Known: {', '.join(regs)}")
    reg = regs[key]
    items = reg.items()
    print(f"registry '{reg.name}' (scope {reg.scope}): {len(items)} entries")
    for entry, obj in items:
        where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
        print(f"  {entry:<36} {where}")
    return 0
