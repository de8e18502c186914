"""Moved to :mod:`agentproto.agent.pathquery`: this old name is that very module (compatibility)."""

import sys

from .agent import pathquery as _moved
from .agent.pathquery import *  # noqa: F403 - the names, for type checkers
from .agent.pathquery import __all__ as __all__

sys.modules[__name__] = _moved  # one module: settings patched here are the ones used
