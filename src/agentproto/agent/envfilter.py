"""The child's environment: ``ExecMsg.env`` filtered by the ``AgentConfig`` patterns.

Patterns are matched against variable *names*. A pattern written ``/…/`` is a
Python regular expression searched anywhere in the name (unanchored, like Go's
``regexp.MatchString``: write ``/^AWS_/`` to anchor); anything else is a
case-sensitive shell glob (``*``, ``?``, ``[…]``) matching the whole name.

The environment of a command is built in three steps:

1. the base: if ``ExecMsg.env`` is None (Go's nil) the child inherits the
   agent's whole environment, as Go's ``exec.Cmd`` does with a nil ``Env``;
   otherwise the base is the agent's variables whose names match an
   ``env_keep`` pattern (none when ``env_keep`` is empty);
2. ``ExecMsg.env`` entries (``NAME=value``) are laid over the base, a later
   entry for the same name replacing an earlier one; entries with no ``=``
   or an empty name are ignored;
3. every variable whose name matches an ``env_remove`` pattern is dropped
   from the result, whichever step it came from.

An invalid pattern (a bad regular expression) is reported by
:func:`compile_patterns` and skipped, so one typo does not block commands.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..types import AgentConfig

__all__ = ["EnvFilter", "build_env", "compile_patterns"]


def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.compile(pattern[1:-1])
    # translate() anchors the end only; \A anchors the start, so the glob spans the name
    return re.compile(r"\A" + fnmatch.translate(pattern))


def compile_patterns(patterns: Iterable[str] | None) -> tuple[list[re.Pattern[str]], list[str]]:
    """Compile globs and ``/regex/`` patterns; returns (compiled, error messages)."""
    compiled: list[re.Pattern[str]] = []
    errors: list[str] = []
    for pattern in patterns or ():
        try:
            compiled.append(_compile(pattern))
        except re.error as exc:
            errors.append(f"invalid pattern {pattern!r}: {exc}")
    return compiled, errors


@dataclass(slots=True)
class EnvFilter:
    """Compiled ``env_keep`` / ``env_remove`` patterns (see the module docs)."""

    keep: list[re.Pattern[str]] = field(default_factory=list)
    remove: list[re.Pattern[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: AgentConfig | None) -> EnvFilter:
        """Compile a config's patterns; bad ones are skipped and listed in ``errors``."""
        if config is None:
            return cls()
        keep, keep_errors = compile_patterns(config.env_keep)
        remove, remove_errors = compile_patterns(config.env_remove)
        return cls(keep, remove, keep_errors + remove_errors)

    def keeps(self, name: str) -> bool:
        """True if ``name`` matches an ``env_keep`` pattern."""
        return any(p.search(name) for p in self.keep)

    def removes(self, name: str) -> bool:
        """True if ``name`` matches an ``env_remove`` pattern."""
        return any(p.search(name) for p in self.remove)

    def build(self, requested: list[str] | None, agent_env: Mapping[str, str]) -> dict[str, str]:
        """The child's environment for ``ExecMsg.env`` = ``requested``."""
        if requested is None:
            env = dict(agent_env)
        else:
            env = {k: v for k, v in agent_env.items() if self.keeps(k)}
            for entry in requested:
                name, sep, value = entry.partition("=")
                if sep and name:
                    env[name] = value
        if self.remove:
            env = {k: v for k, v in env.items() if not self.removes(k)}
        return env


def build_env(
    requested: list[str] | None, config: AgentConfig | None, agent_env: Mapping[str, str]
) -> dict[str, str]:
    """Shortcut for ``EnvFilter.from_config(config).build(requested, agent_env)``."""
    return EnvFilter.from_config(config).build(requested, agent_env)
