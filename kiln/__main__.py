"""``python -m kiln`` is the ``kiln`` command."""

from kiln.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
