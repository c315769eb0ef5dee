"""``kiln`` entry point: builds the argparse tree and dispatches to the subcommand modules.

Exit codes: 0 success, 1 a failure while running, 2 bad arguments or a bad config. Either way the
user sees one message on stderr naming what failed; ``--debug`` (or ``KILN_DEBUG=1``) lets the
original exception and its traceback through instead. A failure while training also writes its
traceback into the run's log file, so the message can stay short without losing anything.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from kiln import __version__

from .errors import EXIT_RUNTIME, EXIT_USAGE, CLIError

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
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _COMMANDS.items():
        mod = importlib.import_module(f"kiln.cli.{module}")
        p = mod.add_parser(sub, name)
        # (SUPPRESS: `kiln --debug train ...` is not reset to False by the subcommand's default)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        p.set_defaults(_run=mod.run)
    return parser


_DEBUG_HELP = ("show the full traceback of any error instead of one message (same as KILN_DEBUG=1; "
               "inherited by worker processes)")


def _print_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the frame that raised ``exc`` (the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def _log_files_of_run() -> list[str]:
    """Files the ``kiln`` logger writes to (the run's log.txt once a run has started)."""
    return [h.baseFilename for h in logging.getLogger("kiln").handlers if isinstance(h, logging.FileHandler)]


def _report_failure(prog: str, exc: Exception) -> int:
    """One message for a failure while running; the traceback goes to the run's log file (if any).
    Returns the exit status: 2 when the failure is the input's (resuming with a changed model), else 1."""
    logs = _log_files_of_run()
    for handler in logging.getLogger("kiln").handlers:
        if isinstance(handler, logging.FileHandler):
            record = logging.LogRecord("kiln", logging.ERROR, __file__, 0, "%s failed", (prog,),
                                       (type(exc), exc, exc.__traceback__))
            handler.handle(record)
    kept = f" The traceback is in {logs[0]}." if logs else ""
    known = _known_failure(exc)
    if known is not None:  # a failure kiln explains itself (disk full, ...): its message is the report
        _print_error(prog, f"{_own_message(known)}\n  "
                           f"({kept.strip() or 'Run again with --debug for the traceback.'})")
        return _exit_code(known)
    where = _where(exc)
    detail = f" at {where}" if where else ""
    _print_error(prog, f"{type(exc).__name__}: {exc}\n  (raised{detail}.{kept} Run again with --debug, "
                       f"or KILN_DEBUG=1, to see the full traceback.)")
    return EXIT_RUNTIME


def _own_message(exc: BaseException) -> str:
    """``exc``'s message; for an error re-raised from a data-loader worker (whose message carries the
    worker's traceback), the worker's final line - the error itself."""
    text = str(exc)
    if "Original Traceback (most recent call last)" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(exc).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return text


def _exit_code(exc: BaseException) -> int:
    from kiln.engine.checkpoint import ResumeMismatchError

    return EXIT_USAGE if isinstance(exc, ResumeMismatchError) else EXIT_RUNTIME


def _known_failure(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain whose message already says what failed and what to do (e.g. a
    checkpoint that could not be written, wrapped by the hook that saved it)."""
    from kiln.engine.checkpoint import CheckpointWriteError, ResumeMismatchError
    from kiln.engine.nonfinite import NonFiniteLossError
    from kiln.image.io import CorruptImageError
    from kiln.utils.misc import exception_in_chain

    return exception_in_chain(exc, (CheckpointWriteError, ResumeMismatchError, NonFiniteLossError,
                                    CorruptImageError))


def _one_line_warnings(prog: str) -> None:
    """kiln's own warnings (about the user's config and data) print as ``kiln CMD: warning: ...``,
    without the source line Python adds; other libraries' warnings keep Python's format."""
    import warnings

    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):  # noqa: ANN001, ANN202 (warnings' API)
        if category.__module__.startswith("kiln."):
            return f"{prog}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt


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
    # `python -m kiln` puts the current directory first on sys.path; the `kiln` console script does not.
    # Do the same here, so custom_imports / --import of a module next to the config work with both.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:  # argparse already printed usage + the message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"kiln {args.command}"
    _one_line_warnings(prog)
    if getattr(args, "debug", False):
        os.environ["KILN_DEBUG"] = "1"  # (read where errors are turned into messages, also in workers)
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
    except Exception as exc:  # a failure while running: one message, the traceback in the log file
        if os.environ.get("KILN_DEBUG"):
            raise
        return _report_failure(prog, exc)


if __name__ == "__main__":
    raise SystemExit(main())
