"""reclab: read, analyse, view and replay agentproto session recordings.

Data flows one way: bytes -> records (agentproto) -> model -> tables / views.
Parsing and analysis never import Textual; only ``reclab.tui`` does.

``reclab.open_recording(path)`` is the entry point of the Python API (see
:mod:`reclab.model`); it is loaded on first use so that ``reclab --version``
and the agent-facing commands start without NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .model import Recording, open_recording

__all__ = ["Recording", "__version__", "open_recording"]


def __getattr__(name: str) -> Any:
    if name in ("open_recording", "Recording"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'reclab' has no attribute {name!r}")
