"""The exceptions the CLI turns into one clean message: :class:`CLIError` (exit 2) and
:class:`CLIRuntimeError` (exit 1)."""

from __future__ import annotations

__all__ = ["CLIError", "CLIRuntimeError", "EXIT_USAGE", "EXIT_RUNTIME"]

#: Exit status for bad arguments or a bad config (argparse uses the same).
EXIT_USAGE = 2
#: Exit status for a failure while running (the input was fine).
EXIT_RUNTIME = 1


class CLIError(Exception):
    """A user error (bad argument, bad config, missing file): printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


class CLIRuntimeError(CLIError):
    """A failure while running that needs no traceback (e.g. the work_dir is in use): exit code 1."""

    exit_code = EXIT_RUNTIME
