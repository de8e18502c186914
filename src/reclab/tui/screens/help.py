"""The ``?`` help screen: every key of every part of the viewer, from their bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

_INTRO = (
    "reclab view: commands on top (and their timeline), the selected command's "
    "tabs below (1-6 show them). Tab moves between parts; the mouse works too. "
    "Ctrl+P: command palette."
)


def key_rows(nodes: list[DOMNode]) -> list[tuple[str, str, str]]:
    """(part, keys, what they do) for every described binding of ``nodes``, once per class."""
    rows: list[tuple[str, str, str]] = []
    seen: set[type[DOMNode]] = set()
    for node in nodes:
        kind = type(node)
        if kind in seen:
            continue
        seen.add(kind)
        keys: dict[str, list[str]] = {}
        for key, bindings in node._bindings.key_to_bindings.items():
            for binding in bindings:
                if binding.description:
                    keys.setdefault(binding.description, []).append(_key_name(key))
        rows.extend((kind.__name__, " ".join(names), what) for what, names in keys.items())
    return rows


def key_table(rows: list[tuple[str, str, str]]) -> Table:
    """The rows of :func:`key_rows` as a table, grouped by part."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    part = ""
    for name, keys, what in rows:
        if name != part:
            table.add_row(Text(name, style="bold underline"), "")
            part = name
        table.add_row(keys, what)
    return table


def _key_name(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter"}
    return names.get(key, key)


class HelpScreen(ModalScreen[None]):
    """Every key, gathered from the app and the main screen's widgets."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%; border: round $accent; background: $surface;
        padding: 0 1;
    }
    """

    def __init__(self, screen: Screen[object]) -> None:
        super().__init__()
        self.under = screen
        self.rows: list[tuple[str, str, str]] = []

    def compose(self) -> ComposeResult:
        """The intro and the key table."""
        nodes: list[DOMNode] = [self.app, self.under, *self.under.query("*")]
        # Panes not mounted yet (tabs not shown so far) have keys too.
        nodes += [part for node in nodes for part in getattr(node, "unmounted_parts", ())]
        self.rows = key_rows(nodes)
        with VerticalScroll():
            yield Static(_INTRO)
            yield Static(key_table(self.rows), id="keys")

    def action_close(self) -> None:
        """Back to where you were."""
        self.dismiss(None)
