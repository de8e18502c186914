"""Replay: send a recording's requests to a live agent and say what changed; stand in for an agent.

- :mod:`~reclab.replay.plan`: what a replay would send (:func:`build_plan`,
  :func:`plan_command` for one command), read from a recording, nothing run;
- :mod:`~reclab.replay.run`: send it to a live agent and record the replay
  (:func:`run_plan`), or plan, run and compare in one call (:func:`replay`);
- :mod:`~reclab.replay.compare`: compare two runs of commands
  (:func:`compare_commands`, :func:`compare_recordings` for ``reclab diff``);
- :mod:`~reclab.replay.serve`: play the agent side from a recording
  (:class:`RecordedAgent`, :func:`serve_stdio`, :func:`serve_listener`);
- :mod:`~reclab.replay.report`: the report as a rich table or JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .compare import (
    CommandComparison,
    CompareOptions,
    Comparison,
    Difference,
    compare_commands,
    compare_recordings,
    pair_commands,
)
from .plan import CommandPlan, Plan, PlanStep, build_plan, mask_env, plan_command

if TYPE_CHECKING:
    from .run import CommandRun, ReplayRun, compare_replay, replay, run_plan

# The live side (agents, connections) loads only when asked for: plan and compare are
# reading code, and a viewer importing them must not pull in the runner.
_LIVE = {"CommandRun", "ReplayRun", "compare_replay", "replay", "run_plan"}


def __getattr__(name: str) -> Any:
    if name in _LIVE:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CommandComparison",
    "CommandPlan",
    "CommandRun",
    "CompareOptions",
    "Comparison",
    "Difference",
    "Plan",
    "PlanStep",
    "ReplayRun",
    "build_plan",
    "compare_commands",
    "compare_recordings",
    "compare_replay",
    "mask_env",
    "pair_commands",
    "plan_command",
    "replay",
    "run_plan",
]
