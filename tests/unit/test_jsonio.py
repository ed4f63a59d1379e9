"""`services.common.jsonio`: orjson's speed, JSON's rules, Python's exact integers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from services.common import jsonio


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": [Infinity]}', '{"a": -Infinity}',
                                  b'{"a": 1e400}', b'{"a": 1234567890123456789012, "b": NaN}'])
def test_nan_and_infinities_are_not_json(text: bytes | str) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(text)
    with pytest.raises(jsonio.NotJsonNumber):
        jsonio.loads_finite(text)


def test_the_reason_names_the_number() -> None:
    with pytest.raises(jsonio.NotJsonNumber, match="NaN is not a JSON number"):
        jsonio.loads_finite('{"torque": NaN}')
    with pytest.raises(jsonio.NotJsonNumber, match="1e400 is too large for a JSON number"):
        jsonio.loads_finite('{"torque": 1e400}')


@pytest.mark.parametrize("text", [b'{"a": 123456789012345678901234567890}',
                                  '{"s": "SN-12345678901234567890", "n": [1, 2.5, -0.0]}',
                                  b'{"a": 18446744073709551615, "b": -9223372036854775808}',
                                  '{"u": "\\u00fc\\u00df", "e": {}, "l": [], "z": null}'])
def test_what_loads_reads_is_what_json_reads(text: bytes | str) -> None:
    got = jsonio.loads(text)
    assert got == json.loads(text)
    assert [type(v) for v in got.values()] == [type(v) for v in json.loads(text).values()]


def test_non_finite_says_where() -> None:
    assert jsonio.non_finite({"a": [1, {"b": math.nan}]}) == "a.1.b"
    assert jsonio.non_finite({"a": (1.5, math.inf)}) == "a.1"
    assert jsonio.non_finite(-math.inf) == "the value"
    assert jsonio.non_finite({"a": [1.5, "NaN", None, {"b": 2}]}) is None


@pytest.mark.parametrize("value", [{"a": [1, "ü", None, True, 2.5]}, {"big": 2**70},
                                   {1: "int key"}, {"nested": {"x": [{"y": -0.0}]}}])
def test_dumps_is_compact_json_that_reads_back(value: Any) -> None:
    text = jsonio.dumps(value)
    assert json.loads(text) == json.loads(json.dumps(value))
    assert b", " not in text and b": " not in text
    assert jsonio.dumps_text(value) == text.decode()


def test_dumps_asks_default_for_datetimes_and_refuses_what_json_refuses() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert jsonio.dumps({"t": when}, lambda o: "T" if o is when else None) == b'{"t":"T"}'
    with pytest.raises(TypeError):
        jsonio.dumps({"t": when})
    with pytest.raises(TypeError):
        jsonio.dumps({"s": {1, 2}})


def test_stored_json_is_read_even_with_a_nan_an_older_version_wrote() -> None:
    assert math.isnan(jsonio.loads_stored('{"torque": NaN}')["torque"])
    assert jsonio.loads_stored(b'{"a": 123456789012345678901234567890}') == {
        "a": 123456789012345678901234567890}
