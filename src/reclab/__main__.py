"""``python -m reclab`` and the ``reclab`` console script.

Kept tiny: a Ctrl-C while the CLI's modules are still importing (typer,
rich, the command modules) must end the program quietly with status 130
like one during a command, not with a traceback of the import machinery.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the reclab CLI; an interrupt anywhere exits 130 with one line."""
    try:
        from reclab.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        print("reclab: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
