"""Frame detail (Enter on a frame): every field, the CBOR in diagnostic notation, a hex dump.

The record's bytes are read again from the file, so the diagnostic notation
and the hex dump show exactly what was recorded, with file offsets. Very
large records are shown in part (:data:`MAX_BYTES`) and say so.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from typing import TYPE_CHECKING, Any, ClassVar

import cbor2
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from reclab.timeline import safe_preview, safe_text
from reclab.tui.safe import hex_dump_line

if TYPE_CHECKING:
    from reclab.model import Recording

__all__ = ["MAX_BYTES", "FrameDetailScreen", "cbor_diagnostic", "record_bytes"]

MAX_BYTES = 64 * 1024  # hex-dumped bytes of one record; the rest is summarised
_MAX_BSTR = 256  # bytes of one byte string written out in diagnostic notation


def record_bytes(rec: Recording, index: int) -> tuple[int, bytes, int]:
    """``(offset, bytes, total size)`` of record ``index`` (bytes: at most MAX_BYTES + 1 MiB)."""
    offset = rec.offset_of(index)
    end = rec.offset_of(index + 1) if index + 1 < rec.record_count else rec.indexed_bytes
    size = end - offset
    fd = os.open(rec.path, os.O_RDONLY)
    try:
        data = os.pread(fd, min(size, MAX_BYTES + (1 << 20)), offset)
    finally:
        os.close(fd)
    return offset, data, size


def cbor_diagnostic(item: Any, indent: int = 0) -> str:
    """CBOR diagnostic notation (RFC 8949 section 8) of a decoded cbor2 item, pretty-printed.

    Maps and arrays go one entry a line; byte strings are ``h'...'`` (long ones
    cut with a ``/ ... /`` comment giving the size); text strings are JSON
    strings with every non-ASCII character escaped, so nothing in them can
    act on a terminal; tags are ``N(item)``; floats keep their CBOR spellings
    (``NaN``, ``Infinity``).
    """
    pad = "  " * (indent + 1)
    end_pad = "  " * indent
    if item is None:
        return "null"
    if item is True:
        return "true"
    if item is False:
        return "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "NaN"
        if math.isinf(item):
            return "Infinity" if item > 0 else "-Infinity"
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=True)
    if isinstance(item, bytes | bytearray):
        shown = bytes(item[:_MAX_BSTR]).hex()
        if len(item) > _MAX_BSTR:
            return f"h'{shown}' / ... {len(item)} bytes in all /"
        return f"h'{shown}'"
    if isinstance(item, dict):
        if not item:
            return "{}"
        entries = [
            f"{pad}{cbor_diagnostic(k, indent + 1)}: {cbor_diagnostic(v, indent + 1)}"
            for k, v in item.items()
        ]
        return "{\n" + ",\n".join(entries) + "\n" + end_pad + "}"
    if isinstance(item, list | tuple):
        if not item:
            return "[]"
        return (
            "[\n"
            + ",\n".join(pad + cbor_diagnostic(v, indent + 1) for v in item)
            + "\n"
            + end_pad
            + "]"
        )
    if isinstance(item, cbor2.CBORTag):
        return f"{item.tag}({cbor_diagnostic(item.value, indent)})"
    if isinstance(item, cbor2.CBORSimpleValue):
        return f"simple({item.value})"
    if item is cbor2.undefined:
        return "undefined"
    return safe_text(
        repr(item)
    )  # a type cbor2 built (datetime, Decimal...): shown as Python sees it


def _field_lines(obj: Any, name: str, depth: int, out: Text) -> None:
    """Append ``name: value`` lines for a decoded wire object, nested dataclasses indented."""
    pad = "  " * depth
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out.append(f"{pad}{name}:\n" if name else "", "bold")
        for f in dataclasses.fields(obj):
            _field_lines(getattr(obj, f.name), f.name, depth + (1 if name else 0), out)
        return
    if isinstance(obj, list) and obj and dataclasses.is_dataclass(obj[0]):
        out.append(f"{pad}{name}: {len(obj)} entries\n", "bold")
        for n, entry in enumerate(obj[:100]):
            _field_lines(entry, f"[{n}]", depth + 1, out)
        return
    out.append(f"{pad}{name}: ", "bold")
    if isinstance(obj, enum.Enum):
        out.append(f"{obj.name} ({obj.value})")
    elif isinstance(obj, bytes):
        out.append(f"{len(obj)} bytes ", "dim")
        out.append(safe_preview(obj, 120))
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=True) if obj else '""')
    elif isinstance(obj, list):
        out.append(safe_text(repr(obj), 2000))
    else:
        out.append(safe_text(str(obj)))
    out.append("\n")


class FrameDetailScreen(ModalScreen[None]):
    """One recorded frame in full: fields, CBOR diagnostic notation, hex dump. Escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    FrameDetailScreen { align: center middle; }
    FrameDetailScreen > VerticalScroll {
        width: 95%; height: 95%; border: thick $accent; background: $surface; padding: 0 1;
    }
    FrameDetailScreen .section { text-style: bold; color: $accent; margin-top: 1; }
    """

    def __init__(self, rec: Recording, record_index: int) -> None:
        super().__init__()
        self.rec = rec
        self.record_index = record_index

    def compose(self) -> ComposeResult:
        try:
            offset, data, size = record_bytes(self.rec, self.record_index)
        except (OSError, IndexError) as exc:  # the file changed under us: say so, no crash
            with VerticalScroll() as scroll:
                scroll.border_subtitle = "Esc closes"
                yield Static(Text(f"cannot read record {self.record_index}: {exc}", "red"))
            return
        title = f"record {self.record_index} at byte {offset}, {size} bytes"
        with VerticalScroll() as scroll:
            scroll.border_title = title
            scroll.border_subtitle = "Esc closes"
            yield Static("Fields", classes="section")
            yield Static(self._fields(), id="fields")
            yield Static("CBOR (diagnostic notation)", classes="section")
            yield Static(self._diagnostic(data, size), id="diagnostic")
            yield Static("Bytes", classes="section")
            yield Static(self._hex(offset, data, size), id="hex")

    def _fields(self) -> Text:
        out = Text()
        try:
            record = self.rec.record(self.record_index)
        except Exception as exc:  # a broken record: say why, the bytes below still show
            return Text(f"cannot decode: {exc}", "red")
        _field_lines(record, "", 0, out)
        out.rstrip()
        return out

    @staticmethod
    def _diagnostic(data: bytes, size: int) -> Text:
        if len(data) < size:
            return Text(f"(a record of {size} bytes: too large to decode here)", "dim")
        try:
            item = cbor2.loads(data)
        except Exception as exc:
            return Text(f"not valid CBOR: {safe_text(str(exc))}", "red")
        return Text(cbor_diagnostic(item))

    @staticmethod
    def _hex(offset: int, data: bytes, size: int) -> Text:
        out = Text()
        shown = min(len(data), MAX_BYTES)
        for at in range(0, shown, 16):
            out.append_text(hex_dump_line(data[at : at + 16], offset + at))
            out.append("\n")
        if size > shown:
            out.append(f"... {size - shown} more bytes", "dim")
        out.rstrip()
        return out
