"""``kiln`` entry point: builds the argparse tree and dispatches to the subcommand modules.

Exit codes: 0 success, 1 a failure while running (with traceback), 2 bad arguments or a bad
config (one message on stderr, no traceback; set ``KILN_DEBUG=1`` to see the traceback anyway).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kiln import __version__

from .errors import EXIT_USAGE, CLIError

__all__ = ["build_parser", "main"]

# subcommand -> module in kiln.cli (imported when the parser is built; they import torch lazily).
_COMMANDS = {
    "train": "train",
    "test": "test",
    "infer": "infer",
    "config": "config_cmd",
    "registry": "registry_cmd",
    "browse-dataset": "browse",
    "plot": "plot",
    "surgery": "surgery",
    "summarize": "summarize",
    "zoo": "zoo_cmd",
    "convert": "convert_cmd",
    "gen-fewshot-configs": "fewshot",
    "fewshot": "fewshot_sweep",
}


def build_parser() -> argparse.ArgumentParser:
    """The full ``kiln`` parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="kiln",
        description="kiln: config-driven training and detection toolbox. "
                    "Run `kiln COMMAND -h` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _COMMANDS.items():
        mod = importlib.import_module(f"kiln.cli.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def _print_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; commands that take Detectron2 overrides also take them as trailing ``KEY VALUE``
    pairs (Detectron2's ``opts``, argparse.REMAINDER), placed before any ``--opts`` items.

    A REMAINDER positional cannot be declared next to ``CONFIG`` (it would swallow the flags written
    after CONFIG), so the words argparse does not place are collected instead; an unknown ``--flag``
    among them is still an error.
    """
    args, extras = parser.parse_known_args(list(argv) if argv is not None else None)
    cfg_options = getattr(args, "cfg_options", None)
    if getattr(args, "_trailing_opts", False) and cfg_options:
        # `--cfg-options a=1 KEY VALUE`: nargs='+' takes the trailing pairs too; they start at the first
        # word that is not key=value.
        cut = next((i for i, w in enumerate(cfg_options) if "=" not in w), len(cfg_options))
        args.cfg_options, extras = cfg_options[:cut], [*cfg_options[cut:], *extras]
    if extras:
        flags = [e for e in extras if e.startswith("-") and not _is_number(e)]
        if flags or not getattr(args, "_trailing_opts", False):
            parser.error(f"unrecognized arguments: {' '.join(flags or extras)}")
        args.opts = list(extras) + list(args.opts or [])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kiln`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:  # argparse already printed usage + the message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"kiln {args.command}"
    try:
        if getattr(args, "imports", None):
            from .common import import_plugins

            import_plugins(args.imports)
        return int(args._run(args) or 0)
    except CLIError as exc:
        if os.environ.get("KILN_DEBUG"):
            raise
        _print_error(prog, str(exc))
        return exc.exit_code
    except SystemExit as exc:  # kiln.engine.TrainingPreempted: the run logged where its checkpoint is
        return int(exc.code) if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        _print_error(prog, "interrupted")
        return 130
    except BrokenPipeError:  # e.g. `kiln config print x | head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
