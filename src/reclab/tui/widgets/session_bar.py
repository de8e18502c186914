"""The session bar: who recorded what where, how far indexing is, and whether the file is whole."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ...text import format_duration, format_size, format_time, safe_text
from ..source import IndexSnapshot


def _size(n: int) -> str:
    return format_size(n)


def session_end(snap: IndexSnapshot) -> int | None:
    """The latest time the recording knows of: the footer's end, else the last command event."""
    if snap.footer is not None:
        return snap.footer.end_time
    times = [
        t
        for cmd in snap.commands.values()
        for t in (cmd.end_time, cmd.last_frame_time, cmd.start_time)
        if t is not None
    ]
    return max(times) if times else None


def describe_problem(snap: IndexSnapshot, following: bool) -> Text | None:
    """The warning line for a cut, footer-less or damaged recording (None when it is whole)."""
    if not snap.done:
        return None
    line = Text()
    t = snap.truncation
    if t is not None:
        if following and t.kind in ("cut", "no-footer"):
            line.append("● live: ", style="bold yellow")
            line.append(f"still being written; {_size(t.offset)} read so far", style="yellow")
        elif t.kind == "no-footer":
            line.append(f"⚠ no session footer after byte {t.offset}: ", style="bold yellow")
            line.append("the writer did not close it (crashed or still writing)", style="yellow")
        else:
            # Where first: a narrow terminal cuts the end of the line, not the offset.
            line.append(f"⚠ {t.kind} at byte {t.offset}: ", style="bold red")
            line.append(f"{safe_text(t.message, 120)}; showing everything before it", style="red")
    for d in snap.damage:
        if t is not None and d.offset == t.offset:
            continue  # already said
        line.append(f"  ⚠ damage at byte {d.offset}: ", style="bold red")
        line.append(f"{d.size} bytes skipped: {safe_text(d.message, 80)}", style="red")
    return line if line.plain else None


class SessionBar(Widget):
    """Backend and address, agent, user, start, duration, commands, indexing, warnings."""

    DEFAULT_CSS = """
    SessionBar {
        height: auto;
        max-height: 4;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, following: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.following = following
        self._snap: IndexSnapshot | None = None
        self._lines = 0  # lines drawn (the bar's height)

    def update_snapshot(self, snap: IndexSnapshot) -> None:
        """Show ``snap`` (called for every published snapshot)."""
        self._snap = snap
        # A new layout (of the whole screen: slow while indexing competes for the
        # GIL) only when the bar's height changes, not for every progress step.
        lines = self.render().plain.count("\n") + 1
        self.refresh(layout=lines != self._lines)
        self._lines = lines

    def render(self) -> Text:
        """Two lines (three with a warning): the session, then the counts and progress."""
        snap = self._snap
        out = Text(no_wrap=True, overflow="ellipsis")
        if snap is None:
            return out
        h = snap.header
        if h is None:
            out.append("no session header", style="bold red")
        else:
            backend = h.backend_type or "?"
            if h.backend_addr:
                backend += f" {h.backend_addr}"
            out.append(safe_text(backend, 60), style="bold")
            out.append("  user ", style="dim")
            out.append(safe_text(h.local_user or "?", 30))
            out.append("  start ", style="dim")
            out.append(format_time(h.start_time))
            out.append("  agent ", style="dim")
            out.append(safe_text(h.agent_path or "?", 200))
        out.append("\n")
        end = session_end(snap)
        if h is not None and end is not None:
            out.append("duration ", style="dim")
            out.append(format_duration(max(end - h.start_time, 0) / 1e9))
            out.append("  ")
        out.append("commands ", style="dim")
        out.append(str(len(snap.commands)), style="bold")
        if snap.footer is not None:
            count = snap.footer.command_count
            style = "" if count == len(snap.commands) else "bold red"
            out.append(f" (footer says {count})", style=style)
        out.append("  records ", style="dim")
        out.append(str(snap.record_count))
        out.append("  ")
        out.append(_size(snap.file_size), style="dim")
        if not snap.done:
            share = snap.indexed_bytes / snap.file_size if snap.file_size else 1.0
            filled = round(share * 20)
            out.append("  indexing ", style="bold cyan")
            out.append("█" * filled + "░" * (20 - filled), style="cyan")
            out.append(f" {share:4.0%}", style="cyan")
        problem = describe_problem(snap, self.following)
        if problem is not None:
            out.append("\n")
            out.append_text(problem)
        return out
