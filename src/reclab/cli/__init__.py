"""The ``reclab`` command line: thin typer commands over the documented Python API.

Each command lives in a module of this package and registers itself on
:data:`app`; importing the modules here is what makes them appear.
"""

from __future__ import annotations

# The command modules do without ``from __future__ import annotations``: typer reads every
# command's signature to build the app, `reclab --help` too, and string annotations would
# make it compile each one again (40 ms of a 300 ms start-up).
# Each command module registers its commands on ``app`` when imported (Textual, pandas, DuckDB
# and the live side load only inside the commands that use them).
from . import export, fleet, inspect, record, redact, replay, view  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
