"""JSON in and out: fast (orjson) where records are hot, and JSON as RFC 8259 has it.

Python's `json` reads `NaN`, `Infinity` and `-Infinity`, which are not JSON. Let in (a
measurement from equipment, a start's context, an HTTP body), such a number travelled through
the router's state into instance events and the tasks database, and the first HTTP response
that had to carry it failed: Starlette writes responses with `allow_nan=False`, so that GET
answered 500. Flowline refuses them where JSON comes in: a Kafka record holding one is
dead-lettered as malformed (`envelopes.decode`), an HTTP body holding one gets a 422
(`http.FiniteJsonRoute`). What Flowline writes is therefore finite, and is written with orjson
(a tenth of `json`'s time for a step command: bench/results/NOTES.md, session 12).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

# orjson reads an integer beyond 64 bits as a float (precision lost, silently); `json` reads it
# exactly. Any run of 19 digits (in a string too: a serial number) sends the text to `json`.
_LONG_BYTES = re.compile(rb"\d{19}")
_LONG_TEXT = re.compile(r"\d{19}")


def loads(text: bytes | str) -> Any:
    """Parse JSON as RFC 8259 has it: `NaN`, `Infinity` (or a number too large for a float)
    raise a `ValueError` (a `json.JSONDecodeError`), integers come out exact. orjson's errors
    are `json.JSONDecodeError`s too."""
    long = _LONG_BYTES.search(text) if isinstance(text, bytes) else _LONG_TEXT.search(text)
    return loads_finite(text) if long else orjson.loads(text)


class NotJsonNumber(json.JSONDecodeError):
    """`NaN`, `Infinity`, `-Infinity` or a number too large for a float where a JSON number
    was due."""


def loads_finite(text: bytes | str) -> Any:
    """`json.loads`, refusing `NaN`, `Infinity` and `-Infinity`, and numbers too large for a
    float (`1e400`, which `json` reads as infinity), as `NotJsonNumber`."""
    doc = text.decode() if isinstance(text, bytes | bytearray) else text

    def refuse(name: str) -> Any:
        raise NotJsonNumber(f"{name} is not a JSON number", doc, max(doc.find(name), 0))

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise NotJsonNumber(f"{literal} is too large for a JSON number", doc,
                                max(doc.find(literal), 0))
        return value

    return json.loads(doc, parse_constant=refuse, parse_float=number)


def non_finite(value: Any, where: str = "") -> str | None:
    """Where in `value` (already parsed) a NaN or infinite float is, or None when none is."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where or "the value")
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact UTF-8 JSON. `default` is asked for what orjson cannot write itself (datetimes
    included: it is asked for those too). What orjson refuses (an integer beyond 64 bits,
    a non-string key) is written by `json`, which refuses only what is not JSON."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        return json.dumps(value, default=default, ensure_ascii=False,
                          separators=(",", ":")).encode()


def dumps_text(value: Any) -> str:
    """`dumps` as text (for SQLAlchemy's JSON columns)."""
    return dumps(value).decode()


def loads_stored(text: bytes | str) -> Any:
    """Read JSON a database holds: as `loads`, or as `json` reads it where `loads` refuses (a
    `NaN` an older version stored)."""
    try:
        return loads(text)
    except ValueError:
        return json.loads(text)
