"""The ``reclab`` command line: thin typer commands over the documented Python API.

Each command lives in a module of this package and registers itself on
:data:`app`; importing the modules here is what makes them appear.
"""

from __future__ import annotations

from . import export, fleet, inspect, record, redact  # noqa: F401  (registers the commands)
from .app import app, main

__all__ = ["app", "main"]
