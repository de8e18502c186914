"""``python -m agentproto.agent``: run the agent."""

import sys

from .cli import main

sys.exit(main())
