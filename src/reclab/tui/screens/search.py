"""The search prompt: a pattern to find in outputs, argv, paths and log messages."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class SearchScreen(ModalScreen[str | None]):
    """Ask for a search pattern; Enter searches, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    SearchScreen { align: center middle; }
    SearchScreen > Vertical {
        width: 70%; min-width: 40; height: auto; border: round $accent; background: $surface;
        padding: 0 1;
    }
    SearchScreen Static { color: $text-muted; }
    """

    HINT = (
        "Search outputs, argv, paths and log messages "
        "(lower case: any case). Then n / N: next / previous match."
    )

    def __init__(self, pattern: str = "", *, hint: str = HINT) -> None:
        super().__init__()
        self.pattern = pattern
        self.hint = hint

    def compose(self) -> ComposeResult:
        """A hint and the pattern box."""
        with Vertical():
            yield Static(self.hint)
            yield Input(value=self.pattern, placeholder="pattern", id="pattern")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value or None)

    def action_cancel(self) -> None:
        """Close without searching."""
        self.dismiss(None)
