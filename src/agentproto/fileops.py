"""Moved to :mod:`agentproto.agent.fileops`: this old name is that very module (compatibility)."""

import sys

from .agent import fileops as _moved
from .agent.fileops import *  # noqa: F403 - the names, for type checkers
from .agent.fileops import __all__ as __all__

sys.modules[__name__] = _moved  # one module: settings patched here are the ones used
