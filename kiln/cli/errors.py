"""The one exception type the CLI turns into a clean message and exit code 2."""

from __future__ import annotations

__all__ = ["CLIError", "EXIT_USAGE"]

#: Exit status for bad arguments or a bad config (argparse uses the same).
EXIT_USAGE = 2


class CLIError(Exception):
    """A user error (bad argument, bad config, missing file): printed as one line, exit code 2."""
