"""Moved to :mod:`agentproto.agent.logs`: this old name is that very module (compatibility)."""

import sys

from .agent import logs as _moved
from .agent.logs import *  # noqa: F403 - the names, for type checkers
from .agent.logs import __all__ as __all__

sys.modules[__name__] = _moved  # one module: settings patched here are the ones used
