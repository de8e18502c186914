"""Moved to :mod:`agentproto.agent.envfilter`: this old name is that very module (compatibility)."""

import sys

from .agent import envfilter as _moved
from .agent.envfilter import *  # noqa: F403 - the names, for type checkers
from .agent.envfilter import __all__ as __all__

sys.modules[__name__] = _moved  # one module: settings patched here are the ones used
