"""``kiln zoo list|get|add``: the model zoo table and the local checkpoint cache."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln zoo``."""
    p = sub.add_parser(name, help="model zoo: list entries, locate configs and checkpoints",
                       description="kiln never downloads; checkpoints are read from $KILN_HOME/checkpoints.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    pl = actions.add_parser("list", help="list zoo entries (or, with --configs, shipped config files)")
    pl.add_argument("--configs", action="store_true", help="list shipped config files (kiln:: names)")
    pg = actions.add_parser("get", help="print the config path and the verified checkpoint path")
    pg.add_argument("name")
    pg.add_argument("--config-only", action="store_true", help="print only the config file path")
    pa = actions.add_parser("add", help="publish a local checkpoint into the zoo cache under NAME")
    pa.add_argument("name")
    pa.add_argument("checkpoint")
    pa.add_argument("--config", default=None, help="config file (default: the entry's config)")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln zoo ACTION``."""
    from kiln import model_zoo

    try:
        if args.action == "list":
            if args.configs:
                for rel in model_zoo.list_configs():
                    print(f"kiln::{rel}")
                return 0
            print(f"{'name':<30} {'checkpoint':<10} config / note")
            for e in model_zoo.list_entries():
                try:
                    model_zoo.get_checkpoint_path(e.name, verify=False)
                    state = "cached"
                except model_zoo.ZooError:
                    state = "missing" if e.cache_name else "-"
                print(f"{e.name:<30} {state:<10} {e.config or ''}  {e.note}")
            return 0
        if args.action == "get":
            entry = model_zoo.get_entry(args.name)
            if entry.config:
                print(f"config: {model_zoo.get_config_file(args.name)}")
            if not args.config_only:
                print(f"checkpoint: {model_zoo.get_checkpoint_path(args.name)}")
            return 0
        config = args.config
        if config is not None:
            from kiln.model_zoo import resolve_config_path

            resolve_config_path(config)  # fail early on a bad kiln:: name
        entry = model_zoo.add_entry(args.name, args.checkpoint, config=config)
        print(f"added '{entry.name}': {model_zoo.get_checkpoint_path(entry.name)} (sha256 {entry.sha256})")
        return 0
    except (model_zoo.ZooError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
