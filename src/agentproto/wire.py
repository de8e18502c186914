"""Field tables that turn dataclasses into Go-compatible CBOR structs.

Each wire type is a slotted dataclass whose fields carry a :class:`Wire` spec:
the Go CBOR key, the Go kind (``u32``, ``i64``, ``str``, ``bytes``, a nested
struct...) and ``omitempty``. :func:`wire_struct` reads that table once and
generates two specialised functions for the class, ``to_map`` and
``from_map``, the same way :mod:`dataclasses` generates ``__init__``.

Why generate code: a generic loop over field specs costs about twice the
decoding time of cbor2 itself on a recording's hot path; straight-line code
per type keeps reading within a few tenths of raw cbor2.

The generated code follows Go's encoding exactly (see wire-notes.md):
fields in declaration order, ``omitempty`` drops zero values, a nil slice
without omitempty is written as null, pointers to structs are dropped when
None. Decoding is Go's: null means the zero value, unknown keys are ignored,
keys that match only case-insensitively are accepted, wrong types and
out-of-range integers are refused naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Wire", "WireKeys", "describe_value", "wire", "wire_struct"]

INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 0xFF),
    "u32": (0, 0xFFFF_FFFF),
    "u64": (0, 0xFFFF_FFFF_FFFF_FFFF),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),  # Go int is 64-bit on every platform the agent runs on
}
SCALAR_KINDS = set(INT_RANGES) | {"bool", "str", "bytes"}
LIST_KINDS = {"list_str", "list_u32", "list_struct"}
STRUCT_KINDS = {"struct", "ptr"}


@dataclass(frozen=True, slots=True)
class Wire:
    """How one dataclass field appears on the wire."""

    key: str
    kind: str
    omitempty: bool = False
    struct: type | None = None  # for struct, ptr and list_struct
    enum: type[enum.IntEnum] | None = None  # for integer kinds with named values


def wire(
    key: str,
    kind: str,
    *,
    omitempty: bool = False,
    struct: type | None = None,
    enum_type: type[enum.IntEnum] | None = None,
) -> Any:
    """Declare a wire field; the Python default is Go's zero value for the kind."""
    spec = Wire(key, kind, omitempty, struct, enum_type)
    meta = {"wire": spec}
    if kind in INT_RANGES:
        zero: int = 0
        if enum_type is not None and 0 in enum_type._value2member_map_:
            zero = enum_type(0)
        return dataclasses.field(default=zero, metadata=meta)
    if kind == "bool":
        return dataclasses.field(default=False, metadata=meta)
    if kind == "str":
        return dataclasses.field(default="", metadata=meta)
    if kind == "bytes":
        return dataclasses.field(default=b"", metadata=meta)
    if kind == "struct":
        assert struct is not None
        return dataclasses.field(default_factory=struct, metadata=meta)
    if kind in LIST_KINDS and omitempty:
        return dataclasses.field(default_factory=list, metadata=meta)
    if kind == "ptr" or kind in LIST_KINDS:
        return dataclasses.field(default=None, metadata=meta)  # nil
    raise ValueError(f"unknown wire kind {kind!r}")


# --- errors raised from generated code -------------------------------------------


def describe_value(value: object) -> str:
    """A short repr of a decoded value for an error message (also for huge integers)."""
    if isinstance(value, int) and value.bit_length() > 128:
        # repr() of a bignum of thousands of digits raises ValueError
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # huge integers nested in containers
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


_describe = describe_value


def bad_decode(type_name: str, key: str, kind: str, value: object) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{type_name}: expected {kind}, got {type(value).__name__} {_describe(value)}", field=key
    )


def bad_encode(type_name: str, key: str, kind: str, value: object) -> LocalProtocolError:
    return LocalProtocolError(
        f"{type_name}: cannot encode {type(value).__name__} {_describe(value)} as Go {kind}",
        field=key,
    )


def nested(exc: Exception, key: str) -> Exception:
    """Prefix the field path of an error raised while converting a nested struct."""
    if isinstance(exc, (LocalProtocolError, RemoteProtocolError)):
        exc.field = f"{key}.{exc.field}" if exc.field else key
    return exc


def fold_keys(m: dict[Any, Any], known: frozenset[str], type_name: str) -> dict[str, Any]:
    """Go's key matching, for maps with a key that matches a field only case-insensitively.

    fxamacker/cbor walks the keys in order and gives each one the first field
    not yet taken that it names exactly or, failing that, case-insensitively
    (Go's ``EqualFold`` on keys of the same byte length, so only ASCII letters
    fold); a key naming a field already taken is ignored: the first one wins.
    """
    lower = {k.lower(): k for k in known}
    out: dict[str, Any] = {}
    for k, v in m.items():
        if k.__class__ is not str:
            continue
        target = k if k in known else (lower.get(k.lower()) if k.isascii() else None)
        if target is not None and target not in out:
            out[target] = v
    return out


def bad_key(type_name: str, key: object) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{type_name}: map key {_describe(key)} of type {type(key).__name__} cannot name a field"
    )


def not_a_map(type_name: str, value: object) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{type_name}: expected a CBOR map, got {type(value).__name__} {_describe(value)}"
    )


# --- code generation ---------------------------------------------------------------


def _int_check(var: str, kind: str, encoding: bool) -> str:
    lo, hi = INT_RANGES[kind]
    if encoding:  # IntEnum members are ints; bool is not a Go integer
        return f"(isinstance({var}, int) and {var}.__class__ is not bool and {lo} <= {var} <= {hi})"
    return f"({var}.__class__ is int and {lo} <= {var} <= {hi})"


def _gen_from_map(cls: type, specs: list[tuple[str, Wire]], ns: dict[str, Any]) -> str:
    # Go writes only the fields that are set, so loop over the keys present (three
    # for a typical data frame) instead of probing all thirteen of Frame's.
    name = cls.__name__
    head = [
        "def from_map(m):",
        "    if m.__class__ is not dict:",
        f"        raise not_a_map({name!r}, m)",
    ]
    zeros: list[str] = []
    branches: list[str] = []
    posts: list[str] = []
    args = []
    for i, (_attr, w) in enumerate(specs):
        a = f"a{i}"
        args.append(a)
        k = w.key
        err = f"raise bad_decode({name!r}, {k!r}, {w.kind!r}, v)"
        if w.kind in INT_RANGES:
            if w.enum:
                ns[f"E{i}"] = dict(w.enum._value2member_map_)
            zero = f"E{i}.get(0, 0)" if w.enum else "0"
            conv = f"E{i}.get(v, v)" if w.enum else "v"
            body = [
                f"if {_int_check('v', w.kind, False)}: {a} = {conv}",
                f"elif v is not None: {err}",
            ]
        elif w.kind == "bool":
            zero = "False"
            body = [f"if v is True or v is False: {a} = v", f"elif v is not None: {err}"]
        elif w.kind in ("str", "bytes"):
            zero = '""' if w.kind == "str" else 'b""'
            body = [
                f"if v.__class__ is {'str' if w.kind == 'str' else 'bytes'}: {a} = v",
                f"elif v is not None: {err}",
            ]
        elif w.kind in ("list_str", "list_u32"):
            zero = "[]" if w.omitempty else "None"
            item = "x.__class__ is str" if w.kind == "list_str" else _int_check("x", "u32", False)
            body = [
                f"if v.__class__ is list and all({item} for x in v): {a} = v",
                f"elif v is not None: {err}",
            ]
        elif w.kind in STRUCT_KINDS or w.kind == "list_struct":
            assert w.struct is not None
            ns[f"S{i}"] = w.struct
            if w.kind == "struct":
                zero, conv, guard = f"S{i}()", f"S{i}.from_map(v)", "dict"
            elif w.kind == "ptr":
                zero, conv, guard = "None", f"S{i}.from_map(v)", "dict"
            else:
                zero = "[]" if w.omitempty else "None"
                conv, guard = f"[S{i}.from_map(x) for x in v]", "list"
            body = [
                f"if v.__class__ is {guard}:",
                "    try:",
                f"        {a} = {conv}",
                "    except RemoteProtocolError as e:",
                f"        raise nested(e, {k!r})",
                f"elif v is not None: {err}",
            ]
        else:  # pragma: no cover - guarded by wire()
            raise AssertionError(w.kind)
        if zero in ("None", "[]") or zero.endswith("()"):
            # containers start as None; a fresh zero value only if absent or null
            zeros.append(f"    {a} = None")
            if zero != "None":
                posts.append(f"    if {a} is None: {a} = {zero}")
        else:
            zeros.append(f"    {a} = {zero}")
        branches.append(f"        {'if' if not branches else 'elif'} k == {k!r}:")
        branches += ["            " + b for b in body]
    loop = [
        "    for k, v in m.items():",
        *branches,
        "        elif k.__class__ is str:",
        "            if k.isascii() and k.lower() in FOLDED:",
        f"                return from_map(fold_keys(m, KNOWN, {name!r}))",
        # Go ignores unknown text and integer keys but refuses any other kind
        "        elif k.__class__ is not int:",
        f"            raise bad_key({name!r}, k)",
    ]
    return "\n".join(head + zeros + loop + posts + [f"    return cls({', '.join(args)})"])


def _gen_to_map(cls: type, specs: list[tuple[str, Wire]], ns: dict[str, Any]) -> str:
    # Each scalar is tested first for the exact builtin class (the common case, one
    # comparison), then on a slow path that accepts subclasses (IntEnum, bytearray...)
    # and refuses what Go cannot hold, zero values included: a False in an int
    # field is refused even where omitempty would drop a 0.
    name = cls.__name__
    lines = ["def to_map(self):", "    m = {}"]
    for i, (attr, w) in enumerate(specs):
        k = w.key
        err = f"raise bad_encode({name!r}, {k!r}, {w.kind!r}, v)"
        body: list[str]
        if w.kind in INT_RANGES:
            lo, hi = INT_RANGES[w.kind]
            slow = _int_check("v", w.kind, True)
            if w.omitempty:
                body = [
                    "if v.__class__ is int:",
                    "    if v:",
                    f"        if not {lo} <= v <= {hi}: {err}",
                    f"        m[{k!r}] = v",
                    f"elif not {slow}: {err}",
                    f"elif v: m[{k!r}] = int(v)",
                ]
            else:
                body = [
                    f"if v.__class__ is int and {lo} <= v <= {hi}: m[{k!r}] = v",
                    f"elif {slow}: m[{k!r}] = int(v)",
                    f"else: {err}",
                ]
        elif w.kind == "bool":
            if w.omitempty:
                body = [f"if v is True: m[{k!r}] = True", f"elif v is not False: {err}"]
            else:
                body = [f"if v is not True and v is not False: {err}", f"m[{k!r}] = v"]
        elif w.kind == "str":
            body = [
                "if v.__class__ is str:",
                f"    {'if v: ' if w.omitempty else ''}m[{k!r}] = v",
                f"elif not isinstance(v, str): {err}",
                f"{'elif v' if w.omitempty else 'else'}: m[{k!r}] = str(v)",
            ]
        elif w.kind == "bytes":
            # bytes(memoryview) matters: cbor2 would write a memoryview as an array of ints
            body = [
                "if v.__class__ is bytes:",
                f"    {'if v: ' if w.omitempty else ''}m[{k!r}] = v",
                f"elif not isinstance(v, (bytes, bytearray, memoryview)): {err}",
                f"{'elif len(v)' if w.omitempty else 'else'}: m[{k!r}] = bytes(v)",
            ]
        elif w.kind in ("list_str", "list_u32"):
            item = "isinstance(x, str)" if w.kind == "list_str" else _int_check("x", "u32", True)
            conv = "[int(x) for x in v]" if w.kind == "list_u32" else "list(v)"
            body = [
                "if v is None:",
                "    pass" if w.omitempty else f"    m[{k!r}] = None",
                f"elif isinstance(v, (list, tuple)) and all({item} for x in v):",
                f"    {'if v: ' if w.omitempty else ''}m[{k!r}] = {conv}",
                f"else: {err}",
            ]
        elif w.kind in STRUCT_KINDS:
            ns[f"S{i}"] = w.struct
            convert = [
                "try:",
                f"    m[{k!r}] = v.to_map()",
                "except LocalProtocolError as e:",
                f"    raise nested(e, {k!r})",
            ]
            if w.kind == "struct":  # a value, never nil
                body = [f"if v.__class__ is not S{i}: {err}", *convert]
            else:
                body = [
                    "if v is None:",
                    # a nil pointer: dropped by omitempty (every pointer in the spec), else null
                    "    pass" if w.omitempty else f"    m[{k!r}] = None",
                    f"elif v.__class__ is not S{i}: {err}",
                    "else:",
                    *["    " + line for line in convert],
                ]
        elif w.kind == "list_struct":
            ns[f"S{i}"] = w.struct
            body = [
                "if v is None:",
                "    pass" if w.omitempty else f"    m[{k!r}] = None",
                "elif not isinstance(v, (list, tuple))"
                f" or any(x.__class__ is not S{i} for x in v):",
                f"    {err}",
                "elif v:" if w.omitempty else "else:",
                "    try:",
                f"        m[{k!r}] = [x.to_map() for x in v]",
                "    except LocalProtocolError as e:",
                f"        raise nested(e, {k!r})",
            ]
        else:  # pragma: no cover
            raise AssertionError(w.kind)
        lines.append(f"    v = self.{attr}")
        lines += ["    " + b for b in body]
    lines.append("    return m")
    return "\n".join(lines)


def _gen_valid_map(cls: type, specs: list[tuple[str, Wire]], ns: dict[str, Any]) -> str:
    # from_map's checks without building anything: True exactly when from_map succeeds.
    # Keys that match only case-insensitively take from_map itself (rare).
    lines = [
        "def valid_map(m):",
        "    if m.__class__ is not dict:",
        "        return False",
        "    for k, v in m.items():",
    ]
    first = True
    for i, (_attr, w) in enumerate(specs):
        k = w.key
        if w.kind in INT_RANGES:
            ok = _int_check("v", w.kind, False)
        elif w.kind == "bool":
            ok = "(v is True or v is False)"
        elif w.kind in ("str", "bytes"):
            ok = f"v.__class__ is {'str' if w.kind == 'str' else 'bytes'}"
        elif w.kind in ("list_str", "list_u32"):
            item = "x.__class__ is str" if w.kind == "list_str" else _int_check("x", "u32", False)
            ok = f"(v.__class__ is list and all({item} for x in v))"
        elif w.kind in STRUCT_KINDS:
            ns[f"S{i}"] = w.struct
            ok = f"S{i}.valid_map(v)"
        elif w.kind == "list_struct":
            ns[f"S{i}"] = w.struct
            ok = f"(v.__class__ is list and all(S{i}.valid_map(x) for x in v))"
        else:  # pragma: no cover - guarded by wire()
            raise AssertionError(w.kind)
        lines.append(f"        {'if' if first else 'elif'} k == {k!r}:")
        lines.append(f"            if v is not None and not {ok}:")
        lines.append("                return False")
        first = False
    lines += [
        "        elif k.__class__ is str:",
        "            if k.isascii() and k.lower() in FOLDED:",
        "                try:",
        "                    cls.from_map(m)",
        "                except RemoteProtocolError:",
        "                    return False",
        "                return True",
        "        elif k.__class__ is not int:",
        "            return False",
        "    return True",
    ]
    return "\n".join(lines)


def wire_struct(cls: type) -> type:
    """Class decorator (after ``@dataclass``): add ``to_map``/``from_map`` from the field table.

    Also ``valid_map(m)``: whether ``from_map(m)`` would succeed, without building anything.
    """
    specs = [(f.name, f.metadata["wire"]) for f in dataclasses.fields(cls)]
    ns: dict[str, Any] = {
        "cls": cls,
        "KNOWN": frozenset(w.key for _, w in specs),
        "FOLDED": frozenset(w.key.lower() for _, w in specs),
        "fold_keys": fold_keys,
        "not_a_map": not_a_map,
        "bad_key": bad_key,
        "bad_decode": bad_decode,
        "bad_encode": bad_encode,
        "nested": nested,
        "RemoteProtocolError": RemoteProtocolError,
        "LocalProtocolError": LocalProtocolError,
    }
    src = "\n\n".join(
        (_gen_from_map(cls, specs, ns), _gen_to_map(cls, specs, ns), _gen_valid_map(cls, specs, ns))
    )
    exec(compile(src, f"<wire struct {cls.__name__}>", "exec"), ns)
    from_map = ns["from_map"]
    from_map.__doc__ = f"Build a {cls.__name__} from its decoded CBOR map (Go's decoding rules)."
    to_map = ns["to_map"]
    to_map.__doc__ = f"The {cls.__name__} as a map in Go's key order, ready for cbor2."
    valid_map = ns["valid_map"]
    valid_map.__doc__ = f"True when from_map would accept this map as a {cls.__name__}."
    cls.from_map = staticmethod(from_map)  # type: ignore[attr-defined]
    cls.valid_map = staticmethod(valid_map)  # type: ignore[attr-defined]
    cls.to_map = to_map  # type: ignore[attr-defined]
    cls.__wire_fields__ = tuple(specs)  # type: ignore[attr-defined]
    return cls


class WireKeys:
    """The CBOR keys of a wire struct's fields, by field name, read from its field table.

    ``WireKeys(Frame).file_op == "fop"``: code that reads decoded maps without
    building dataclasses (the index, the tables) names keys this way, so the
    field table stays the only place a key is spelled.
    """

    def __init__(self, cls: type):
        fields: tuple[tuple[str, Wire], ...] = cls.__wire_fields__  # type: ignore[attr-defined]
        self.__dict__.update({attr: spec.key for attr, spec in fields})
        self._type_name = cls.__name__

    def __getattr__(self, name: str) -> str:  # only for names that are not fields
        raise AttributeError(f"{self._type_name} has no wire field {name!r}")

    def __iter__(self) -> Iterator[str]:
        """Every key of the struct, in declaration order."""
        return (v for k, v in vars(self).items() if k != "_type_name")
