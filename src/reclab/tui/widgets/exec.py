"""The Exec tab: what was run and how it ended.

Path, argv, working directory, the environment sent (values of
secret-looking names masked unless the source's ``reveal_secrets`` is on),
the agent config of the command (env keep/remove patterns), exit codes,
signals and errors. Every string is escaped (:func:`reclab.timeline.safe_text`).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from agentproto import AgentConfig, FrameType
from reclab.redact import MASKED_VALUE, is_secret_name, mask_argv, mask_env
from reclab.timeline import safe_text, signal_name

if TYPE_CHECKING:
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["MASK", "ExecPane", "is_secret_name", "mask_env"]

MASK = MASKED_VALUE
_CONFIG = int(FrameType.CONFIG)
_MAX_CONFIGS = 8  # config frames shown per command (one is usual)


class ExecPane(Static):
    """The exec request, config and ending of one command."""

    DEFAULT_CSS = "ExecPane { height: auto; padding: 0 1; }"

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self.shown_reveal: bool | None = None  # the reveal_secrets setting last drawn

    def on_mount(self) -> None:
        # The app toggles source.reveal_secrets; notice it even if nobody tells us.
        self.set_interval(0.25, self.refresh_secrets)

    def show_command(self, seq: int | None) -> None:
        """Show command ``seq`` (None: a placeholder)."""
        self.seq = seq
        self.update(self._build())

    def refresh_secrets(self) -> None:
        """Draw again if ``source.reveal_secrets`` changed since the last drawing."""
        if self.source.reveal_secrets != self.shown_reveal:
            self.update(self._build())

    def _configs(self) -> list[AgentConfig]:
        cmd = self.source.command(self.seq) if self.seq is not None else None
        if cmd is None:
            return []
        rec = self.source.rec
        kinds = rec.kinds
        count = min(cmd.frame_count, len(cmd.record_indexes))
        found = []
        for i in cmd.record_indexes[:count]:
            if kinds[i] != _CONFIG:
                continue
            try:
                rf = rec.record(i).frame
            except Exception:  # a broken record: the Frames tab says why
                continue
            if rf is not None and rf.frame.config is not None:
                found.append(rf.frame.config)
                if len(found) >= _MAX_CONFIGS:
                    break
        return found

    def _build(self) -> Group | Text:
        reveal = self.source.reveal_secrets
        self.shown_reveal = reveal
        cmd = self.source.command(self.seq) if self.seq is not None else None
        if cmd is None:
            return Text("no command selected", "dim")
        x = cmd.exec
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("path", safe_text(x.path) or Text("(none)", "dim"))
        argv = x.argv if reveal or not x.argv else mask_argv(x.argv)
        grid.add_row("argv", safe_text(shlex.join(argv)) if argv else Text("(none)", "dim"))
        grid.add_row("cwd", safe_text(x.cwd) if x.cwd else Text("(the agent's)", "dim"))
        if x.extra_fds:
            grid.add_row("extra fds", " ".join(map(str, x.extra_fds)))
        if x.env is None:
            grid.add_row("env", Text("(inherited from the agent)", "dim"))
        else:
            env = Text()
            for n, entry in enumerate(mask_env(x.env, reveal=reveal)):
                name, _sep, value = entry.partition("=")
                env.append(("\n" if n else "") + safe_text(name), "cyan")
                env.append("=" + (value if value == MASK else safe_text(value)))
            grid.add_row("env", env if x.env else Text("(empty)", "dim"))
            hint = "secrets shown" if reveal else "secret-looking values masked"
            grid.add_row("", Text(hint, "dim italic"))
        for cfg in self._configs():
            grid.add_row("env keep", safe_text(" ".join(cfg.env_keep or [])) or "-")
            grid.add_row("env remove", safe_text(" ".join(cfg.env_remove or [])) or "-")
        code = cmd.exit_code if cmd.exit_code is not None else cmd.exit_frame_code
        if code is None:
            exit_text = Text("not recorded (no command end)", "yellow")
        else:
            exit_text = Text(str(code), "green" if code == 0 else "bold red")
            if cmd.exit_code is not None and cmd.exit_frame_code not in (None, cmd.exit_code):
                exit_text.append(f"  (exit frame said {cmd.exit_frame_code})", "yellow")
        grid.add_row("exit code", exit_text)
        if cmd.duration is not None:
            grid.add_row("duration", f"{cmd.duration:.3f} s")
        if cmd.signals:
            grid.add_row("signals", ", ".join(signal_name(s) for s in cmd.signals))
        if cmd.errors:
            grid.add_row("errors", Text("\n".join(safe_text(e, 300) for e in cmd.errors), "red"))
        return Group(grid)
