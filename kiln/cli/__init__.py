"""The ``kiln`` command line (``kiln ...`` or ``python -m kiln ...``).

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
:func:`kiln.cli.main.main` dispatches. Importing this package is cheap: torch and friends load
only inside the subcommand that needs them.
"""

from .errors import CLIError
from .main import build_parser, main

__all__ = ["CLIError", "build_parser", "main"]
