"""reclab: read, analyse, view and replay agentproto session recordings.

Data flows one way: bytes -> records (agentproto) -> model -> tables / views.
Parsing and analysis never import Textual; only ``reclab.tui`` does.
"""

__version__ = "0.1.0"
