"""aiokafka's protocol structs, encoded and decoded by functions compiled from their schemas.

aiokafka encodes and decodes every request and response field by field: a method call, a
`BytesIO` read and a one-value `struct` call per field, a generator per array element. The
router sends a fetch for its 24 input partitions and one or two produce requests a batch, and
decodes the answers: at 1,000 completions/s that generic code (`protocol/types.py`) was 9.8 %
of the router's samples, its largest single item (bench/results/NOTES.md, session 20).

`install()` makes `Struct.encode` and `Struct.decode` (what every struct that does not
override them inherits) use a function generated once per struct class from its `SCHEMA`:
straight-line code that packs or unpacks each run of fixed-size fields with one precompiled
`struct` format, loops for arrays, and a slice for each string and byte string. Same values
in, same bytes out, and the other way round; a schema holding a type this module does not
know keeps aiokafka's own code. `tests/unit/test_router_wire.py` checks both ways against
aiokafka's generic code for every struct class aiokafka defines.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any, TypeVar

from aiokafka.protocol import types as t
from aiokafka.protocol.struct import Struct

Decoder = Callable[[bytes, int], tuple[tuple[Any, ...], int]]
Encoder = Callable[[Sequence[Any]], bytes]
C = TypeVar("C", Decoder, Encoder)

# The length prefixes of classic strings ("H") and of byte strings and arrays ("I").
_PREFIXES = {"H": struct.Struct(">h"), "I": struct.Struct(">i")}
# The fixed-size types, by their `struct` format character.
_FIXED: dict[type, str] = {t.Int8: "b", t.Int16: "h", t.Int32: "i", t.UInt32: "I",
                           t.Int64: "q", t.Float64: "d", t.Boolean: "?"}


class Unsupported(Exception):
    """A schema holds a type this module cannot compile: the struct keeps aiokafka's code."""


def _kind(field: Any) -> str:
    if isinstance(field, t.Schema):
        return "schema"
    if isinstance(field, t.CompactArray):
        return "compact_array"
    if isinstance(field, t.Array):
        return "array"
    if isinstance(field, t.CompactString):
        return "compact_string"
    if isinstance(field, t.String):
        return "string"
    if isinstance(field, type):
        if field in _FIXED:
            return "fixed"
        for cls, name in ((t.Bytes, "bytes"), (t.CompactBytes, "compact_bytes"),
                          (t.UnsignedVarInt32, "uvarint"), (t.VarInt32, "varint32"),
                          (t.VarInt64, "varint64"), (t.TaggedFields, "tagged")):
            if field is cls:
                return name
    raise Unsupported(f"{field!r}")


def _uvarint(buf: bytes, pos: int, limit: int = 28) -> tuple[int, int]:
    """An unsigned varint at `pos` (aiokafka's `UnsignedVarInt32.decode`) and the next pos."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("Buffer underrun decoding a varint")
        b = buf[pos]
        pos += 1
        if not b & 0x80:
            return value | (b << shift), pos
        value |= (b & 0x7F) << shift
        shift += 7
        if shift > limit:
            raise ValueError(f"Invalid value {value}")


def _varint32(buf: bytes, pos: int) -> tuple[int, int]:
    value, pos = _uvarint(buf, pos)
    return (value >> 1) ^ -(value & 1), pos


def _varint64(buf: bytes, pos: int) -> tuple[int, int]:
    value, pos = _uvarint(buf, pos, 63)
    return (value >> 1) ^ -(value & 1), pos


def _tagged(buf: bytes, pos: int) -> tuple[dict[int, bytes], int]:
    count, pos = _uvarint(buf, pos)
    tags: dict[int, bytes] = {}
    previous = -1
    for _ in range(count):
        tag, pos = _uvarint(buf, pos)
        if tag <= previous:
            raise ValueError(f"Invalid or out-of-order tag {tag}")
        previous = tag
        size, pos = _uvarint(buf, pos)
        tags[tag] = buf[pos:pos + size]
        pos += size
    return tags, pos


def _underrun(what: str) -> ValueError:
    return ValueError(f"Buffer underrun decoding {what}")


class _Source:
    """Python source being generated: lines, indentation and fresh names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any, prefix: str) -> str:
        name = self.fresh(prefix)
        self.names[name] = value
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _fixed_runs(fields: Sequence[Any]) -> list[tuple[str, list[int]] | int]:
    """Consecutive fixed-size fields grouped: (format, their indexes); others by index."""
    runs: list[tuple[str, list[int]] | int] = []
    for i, field in enumerate(fields):
        if _kind(field) == "fixed":
            last = runs[-1] if runs else None
            if isinstance(last, tuple):
                runs[-1] = (last[0] + _FIXED[field], [*last[1], i])
            else:
                runs.append((_FIXED[field], [i]))
        else:
            runs.append(i)
    return runs


# --- decoding ------------------------------------------------------------------------------

def _decode_schema(src: _Source, schema: t.Schema, indent: int) -> str:
    """Code that decodes `schema` at `pos`; returns the name of the tuple it builds."""
    values = [""] * len(schema.fields)
    for run in _fixed_runs(schema.fields):
        if isinstance(run, tuple):
            fmt, indexes = run
            unpack = src.const(struct.Struct(">" + fmt), "S")
            names = [src.fresh("v") for _ in indexes]
            src.add(indent, f"{', '.join(names)}, = {unpack}.unpack_from(buf, pos)")
            src.add(indent, f"pos += {unpack}.size")
            for i, name in zip(indexes, names, strict=True):
                values[i] = name
        else:
            values[run] = _decode_field(src, schema.fields[run], indent)
    out = src.fresh("t")
    src.add(indent, f"{out} = ({', '.join(values)}{',' if len(values) == 1 else ''})")
    return out


def _decode_field(src: _Source, field: Any, indent: int) -> str:
    kind = _kind(field)
    if kind == "schema":
        return _decode_schema(src, field, indent)
    v = src.fresh("v")
    if kind == "fixed":
        unpack = src.const(struct.Struct(">" + _FIXED[field]), "S")
        src.add(indent, f"{v}, = {unpack}.unpack_from(buf, pos)")
        src.add(indent, f"pos += {unpack}.size")
    elif kind in ("string", "bytes", "compact_string", "compact_bytes"):
        n = _decode_length(src, indent, {"string": "H", "bytes": "I"}.get(kind))
        src.add(indent, f"if {n} < 0:")
        src.add(indent + 1, f"{v} = None")
        src.add(indent, "else:")
        src.add(indent + 1, f"{v} = buf[pos:pos + {n}]")
        src.add(indent + 1, f"pos += {n}")
        what = "string" if "string" in kind else "Bytes"
        src.add(indent + 1, f"if len({v}) != {n}:")
        src.add(indent + 2, f"raise underrun({what!r})")
        if "string" in kind:
            src.add(indent + 1, f"{v} = {v}.decode({field.encoding!r})")
    elif kind in ("array", "compact_array"):
        n = _decode_length(src, indent, "I" if kind == "array" else None)
        src.add(indent, f"if {n} == -1:")
        src.add(indent + 1, f"{v} = None")
        src.add(indent, "else:")
        src.add(indent + 1, f"{v} = []")
        src.add(indent + 1, f"for _ in range({n}):")
        item = _decode_field(src, field.array_of, indent + 2)
        src.add(indent + 2, f"{v}.append({item})")
    else:
        helper = {"uvarint": "uvarint", "varint32": "varint32", "varint64": "varint64",
                  "tagged": "tagged"}[kind]
        src.add(indent, f"{v}, pos = {helper}(buf, pos)")
    return v


def _decode_length(src: _Source, indent: int, fixed: str | None) -> str:
    """Read a length prefix into a fresh variable: `fixed` names the struct ("H": 2 bytes,
    "I": 4) of a classic one; None is a compact one (an unsigned varint, the length + 1)."""
    n = src.fresh("n")
    if fixed:
        src.add(indent, f"{n}, = {fixed}.unpack_from(buf, pos)")
        src.add(indent, f"pos += {_PREFIXES[fixed].size}")
    else:
        src.add(indent, f"{n}, pos = uvarint(buf, pos)")
        src.add(indent, f"{n} -= 1")
    return n


def compile_decoder(schema: t.Schema) -> Decoder:
    """A function (buf, pos) -> (the schema's values, the position after them)."""
    src = _Source()
    src.add(0, "def decode(buf, pos):")
    src.add(1, "try:")
    out = _decode_schema(src, schema, 2)
    src.add(2, f"return {out}, pos")
    src.add(1, "except StructError as exc:")
    src.add(2, "raise ValueError(f'Buffer underrun decoding a struct: {exc}') from exc")
    scope = {**src.names, **_PREFIXES, "uvarint": _uvarint, "varint32": _varint32,
             "varint64": _varint64, "tagged": _tagged, "underrun": _underrun,
             "StructError": struct.error}
    exec(compile("\n".join(src.lines), f"<wire decoder {id(schema):x}>", "exec"), scope)
    decoder: Decoder = scope["decode"]
    return decoder


# --- encoding ------------------------------------------------------------------------------

def _encode_schema(src: _Source, schema: t.Schema, item: str, indent: int) -> None:
    """Code that appends `item`'s encoding (a sequence matching `schema`) to `parts`."""
    names = [src.fresh("x") for _ in schema.fields]
    count = len(schema.fields)
    src.add(indent, f"if len({item}) != {count}:")
    src.add(indent + 1, "raise ValueError('Item field count does not match Schema')")
    if count:
        src.add(indent, f"{', '.join(names)}{',' if count == 1 else ''} = {item}")
    for run in _fixed_runs(schema.fields):
        if isinstance(run, tuple):
            fmt, indexes = run
            pack = src.const(struct.Struct(">" + fmt), "S")
            src.add(indent, f"add({pack}.pack({', '.join(names[i] for i in indexes)}))")
        else:
            _encode_field(src, schema.fields[run], names[run], indent)


def _encode_field(src: _Source, field: Any, value: str, indent: int) -> None:
    kind = _kind(field)
    if kind == "schema":
        _encode_schema(src, field, value, indent)
    elif kind == "fixed":
        pack = src.const(struct.Struct(">" + _FIXED[field]), "S")
        src.add(indent, f"add({pack}.pack({value}))")
    elif kind in ("string", "compact_string"):
        e = src.fresh("e")
        src.add(indent, f"{e} = None if {value} is None else str({value}).encode("
                        f"{field.encoding!r})")
        _encode_length(src, indent, e, "H" if kind == "string" else None)
        src.add(indent + 1, f"add({e})")
    elif kind in ("bytes", "compact_bytes"):
        _encode_length(src, indent, value, "I" if kind == "bytes" else None)
        src.add(indent + 1, f"add({value})")
    elif kind in ("array", "compact_array"):
        element = src.fresh("y")
        _encode_length(src, indent, value, "I" if kind == "array" else None)
        src.add(indent + 1, f"for {element} in {value}:")
        _encode_field(src, field.array_of, element, indent + 2)
    else:  # varints and tagged fields: aiokafka's own encoders (rare, and not hot)
        codec = src.const(field, "C")
        src.add(indent, f"add({codec}.encode({value}))")


def _encode_length(src: _Source, indent: int, value: str, fixed: str | None) -> None:
    """`value`'s length prefix, or its null, in the classic form (`fixed`: "H" for 2 bytes,
    "I" for 4; null is -1) or the compact one (None: an unsigned varint of the length + 1;
    null is 0). What follows at `indent + 1` is written only when `value` is not None."""
    src.add(indent, f"if {value} is None:")
    null = {"H": "NULL16", "I": "NULL32"}.get(fixed or "", "b'\\x00'")
    src.add(indent + 1, f"add({null})")
    src.add(indent, "else:")
    length = f"{fixed}.pack(len({value}))" if fixed else f"uvarint_bytes(len({value}) + 1)"
    src.add(indent + 1, f"add({length})")


def compile_encoder(schema: t.Schema) -> Encoder:
    """A function (the schema's values) -> their encoding."""
    src = _Source()
    src.add(0, "def encode(item):")
    src.add(1, "parts = []")
    src.add(1, "add = parts.append")
    src.add(1, "try:")
    _encode_schema(src, schema, "item", 2)
    src.add(1, "except StructError as exc:")
    src.add(2, "raise ValueError(f'Error encountered when attempting to convert value to "
               "struct format: {exc}') from exc")
    src.add(1, "return b''.join(parts)")
    scope = {**src.names, **_PREFIXES, "NULL16": struct.pack(">h", -1),
             "NULL32": struct.pack(">i", -1), "uvarint_bytes": t.UnsignedVarInt32.encode,
             "StructError": struct.error}
    exec(compile("\n".join(src.lines), f"<wire encoder {id(schema):x}>", "exec"), scope)
    encoder: Encoder = scope["encode"]
    return encoder


# --- installing ----------------------------------------------------------------------------

_GENERIC_DECODE = Struct.__dict__["decode"].__func__
_GENERIC_ENCODE = Struct.__dict__["encode"]
_decoders: dict[type, Decoder | None] = {}
_encoders: dict[type, Encoder | None] = {}


def _decoder(cls: type) -> Decoder | None:
    return _compiled(_decoders, compile_decoder, cls)


def _encoder(cls: type) -> Encoder | None:
    return _compiled(_encoders, compile_encoder, cls)


def _compiled(cache: dict[type, C | None], compile: Callable[[Any], C], cls: type) -> C | None:
    """`cls`'s compiled function, compiled on first use; None where its schema is not
    supported (the generic code serves it)."""
    try:
        return cache[cls]
    except KeyError:
        try:
            compiled: C | None = compile(cls.SCHEMA)  # type: ignore[attr-defined]
        except Unsupported:
            compiled = None
        cache[cls] = compiled
        return compiled


def _decode(cls: type[Struct], data: BytesIO | bytes) -> Struct:
    decoder = _decoders.get(cls) or _decoder(cls)
    if decoder is None:
        return _GENERIC_DECODE(cls, data)  # type: ignore[no-any-return]
    if isinstance(data, bytes):
        values, _ = decoder(data, 0)
    else:  # a stream: read from where it stands, and leave it after what was read
        values, end = decoder(data.getvalue(), data.tell())
        data.seek(end)
    return cls(*values)


def _encode(self: Struct) -> bytes:
    cls = type(self)
    encoder = _encoders.get(cls) or _encoder(cls)
    if encoder is None:
        return _GENERIC_ENCODE(self)  # type: ignore[no-any-return]
    fields = self.__dict__
    return encoder([fields[name] for name in self.SCHEMA.names])


def install() -> None:
    """Make every struct that inherits `Struct.encode` / `Struct.decode` use compiled code."""
    Struct.decode = classmethod(_decode)  # type: ignore[assignment, method-assign]
    Struct.encode = _encode  # type: ignore[method-assign]


def uninstall() -> None:
    """aiokafka's own code again (the tests compare the two)."""
    Struct.decode = classmethod(_GENERIC_DECODE)  # type: ignore[assignment, method-assign]
    Struct.encode = _GENERIC_ENCODE  # type: ignore[method-assign]
