"""services/router/wire.py: compiled codecs give exactly aiokafka's own bytes and values."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import random
import struct
from collections.abc import Iterator
from typing import Any

import aiokafka.protocol
import pytest
from aiokafka.protocol import types as t
from aiokafka.protocol.fetch import FetchResponse_v11
from aiokafka.protocol.struct import Struct

from services.router import wire

FIXED_RANGES = {t.Int8: 7, t.Int16: 15, t.Int32: 31, t.Int64: 63}


def struct_classes() -> Iterator[type[Struct]]:
    """Every struct class aiokafka's protocol package defines that inherits both codecs."""
    seen: set[type] = set()
    for info in pkgutil.iter_modules(aiokafka.protocol.__path__):
        module = importlib.import_module(f"aiokafka.protocol.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Struct) and cls is not Struct and cls not in seen
                    and "decode" not in vars(cls) and "encode" not in vars(cls)
                    and not inspect.isabstract(cls)
                    and isinstance(getattr(cls, "SCHEMA", None), t.Schema)):
                seen.add(cls)
                yield cls


STRUCTS = sorted(struct_classes(), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def value_for(field: Any, rng: random.Random, depth: int = 0) -> Any:
    """A random value of `field`'s type, including the nulls each type allows."""
    if isinstance(field, t.Schema):
        return tuple(value_for(f, rng, depth + 1) for f in field.fields)
    if isinstance(field, t.Array):  # and CompactArray
        if rng.random() < 0.15:
            return None
        return [value_for(field.array_of, rng, depth + 1) for _ in range(rng.randrange(4))]
    if isinstance(field, t.String):  # and CompactString
        if rng.random() < 0.15:
            return None
        return "".join(rng.choice("abcé-ü.") for _ in range(rng.randrange(12)))
    if field in (t.Bytes, t.CompactBytes):
        return None if rng.random() < 0.15 else rng.randbytes(rng.randrange(40))
    if field in FIXED_RANGES:
        bits = FIXED_RANGES[field]
        return rng.choice([0, -1, 1, 2**bits - 1, -(2**bits), rng.randrange(-(2**bits), 2**bits)])
    if field is t.UInt32:
        return rng.randrange(2**32)
    if field is t.Float64:
        return rng.uniform(-1e9, 1e9)
    if field is t.Boolean:
        return rng.random() < 0.5
    if field is t.UnsignedVarInt32:
        return rng.choice([0, 1, 127, 128, 2**31 - 1, rng.randrange(2**31)])
    if field in (t.VarInt32, t.VarInt64):
        return rng.choice([0, -1, 1, 63, -64, 64, rng.randrange(-(2**31), 2**31)])
    if field is t.TaggedFields:
        return {}  # aiokafka encodes no sizes for tags, so only the empty map round-trips
    raise AssertionError(f"no generator for {field!r}")


@pytest.fixture(autouse=True)
def generic_after() -> Iterator[None]:
    yield
    wire.uninstall()


def encode_generic(cls: type[Struct], values: tuple[Any, ...]) -> bytes:
    return cls.SCHEMA.encode(list(values))  # type: ignore[no-any-return]


def test_every_aiokafka_struct_is_compiled() -> None:
    assert len(STRUCTS) > 150  # the request and response versions aiokafka speaks
    for cls in STRUCTS:
        assert wire._decoder(cls) is not None, cls
        assert wire._encoder(cls) is not None, cls


@pytest.mark.parametrize("cls", STRUCTS, ids=lambda c: c.__qualname__)
def test_same_bytes_and_values_as_aiokafka(cls: type[Struct]) -> None:
    rng = random.Random(cls.__qualname__)
    encoder, decoder = wire.compile_encoder(cls.SCHEMA), wire.compile_decoder(cls.SCHEMA)
    for _ in range(25):
        values = value_for(cls.SCHEMA, rng)
        expected = encode_generic(cls, values)
        assert encoder(list(values)) == expected
        decoded, end = decoder(expected, 0)
        assert end == len(expected)
        assert decoded == cls.SCHEMA.decode(io.BytesIO(expected))


def built(cls: type[Struct], values: tuple[Any, ...]) -> Struct:
    """A struct holding `values` (some, like the request headers, take other arguments)."""
    obj = object.__new__(cls)
    obj.__dict__.update(zip(cls.SCHEMA.names, values, strict=True))
    return obj


def test_installed_struct_methods_match_aiokafka() -> None:
    rng = random.Random(7)
    samples = []
    for cls in STRUCTS:
        values = value_for(cls.SCHEMA, rng)
        data = encode_generic(cls, values)
        try:
            generic = cls.decode(data).__dict__
        except TypeError:  # its __init__ takes other arguments: decode fails either way
            generic = None
        samples.append((cls, values, data, generic))
    wire.install()
    for cls, values, data, generic in samples:
        assert built(cls, values).encode() == data, cls
        if generic is None:
            with pytest.raises(TypeError):
                cls.decode(data)
            continue
        assert cls.decode(data).__dict__ == generic == built(cls, values).__dict__, cls
        # From a stream: read from its position, and leave it just after the struct.
        stream = io.BytesIO(b"\x01\x02\x03" + data + b"tail")
        stream.seek(3)
        assert cls.decode(stream).__dict__ == generic, cls
        assert stream.read() == b"tail"


def test_a_fetch_response_decodes_with_its_records() -> None:
    partitions = [(p, 0, 100 + p, 100 + p, 0, [(5, 6)] if p == 1 else None, -1,
                   b"records" * p) for p in range(24)]
    response = FetchResponse_v11(0, 0, 0, [("flowline.completions", partitions)])
    data = response.encode()
    wire.install()
    decoded = FetchResponse_v11.decode(io.BytesIO(data))
    assert decoded.topics == [("flowline.completions", partitions)]
    assert decoded.encode() == data


@pytest.mark.parametrize("cls", [c for c in STRUCTS if c.__name__ in
                                 ("FetchResponse_v11", "ProduceResponse_v8",
                                  "MetadataResponse_v5", "ApiVersionsResponse_v3")])
def test_truncated_input_is_a_value_error(cls: type[Struct]) -> None:
    rng = random.Random(3)
    values = value_for(cls.SCHEMA, rng)
    while not any(values[1:]):  # something past the first field to cut into
        values = value_for(cls.SCHEMA, rng)
    data = encode_generic(cls, values)
    decoder = wire.compile_decoder(cls.SCHEMA)
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="underrun|Invalid"):
            decoder(data[:cut], 0)


def test_a_string_or_bytes_that_says_it_is_longer_than_the_buffer_is_refused() -> None:
    decoder = wire.compile_decoder(t.Schema(("name", t.String("utf-8")), ("blob", t.Bytes)))
    data = struct.pack(">h", 2) + b"ok" + struct.pack(">i", 10) + b"short"
    with pytest.raises(ValueError, match="underrun decoding Bytes"):
        decoder(data, 0)
    assert decoder(data[:4] + struct.pack(">i", 5) + b"short", 0) == (("ok", b"short"), 13)


def test_encoding_a_value_out_of_range_is_a_value_error() -> None:
    encoder = wire.compile_encoder(t.Schema(("n", t.Int16), ("s", t.String("utf-8"))))
    with pytest.raises(ValueError):
        encoder([2**15, "x"])
    with pytest.raises(ValueError):
        encoder([1, "x" * 2**15])
    with pytest.raises(ValueError, match="field count"):
        encoder([1])


def test_tagged_fields_decode_like_aiokafka() -> None:
    schema = t.Schema(("a", t.Int8), ("tags", t.TaggedFields), ("b", t.CompactString("utf-8")))
    # two tags (1: b"xy", 4: b""), then b = "hi"
    data = bytes([9, 2, 1, 2]) + b"xy" + bytes([4, 0, 3]) + b"hi"
    assert wire.compile_decoder(schema)(data, 0) == (schema.decode(io.BytesIO(data)), 11)
    assert schema.decode(io.BytesIO(data)) == (9, {1: b"xy", 4: b""}, "hi")
    out_of_order = bytes([9, 2, 4, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="out-of-order"):
        wire.compile_decoder(schema)(out_of_order, 0)


def test_an_unknown_field_type_keeps_aiokafka_code() -> None:
    class Odd(t.Int32):
        pass

    class OddStruct(Struct):
        SCHEMA = t.Schema(("n", Odd))

    wire.install()
    assert wire._decoder(OddStruct) is None
    assert OddStruct(5).encode() == struct.pack(">i", 5)
    assert OddStruct.decode(struct.pack(">i", 5)).n == 5
