"""Durations as designers write them: ISO-8601 (`PT4H`, `P1DT2H30M`) or `HH:MM:SS`."""

from __future__ import annotations

import re
from datetime import timedelta

_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CLOCK = re.compile(r"^(?P<hours>\d+):(?P<minutes>[0-5]?\d)(?::(?P<seconds>[0-5]?\d(?:\.\d+)?))?$")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError naming the accepted forms."""
    s = text.strip().upper()
    m = _ISO.match(s)
    if m and s not in ("P", "PT") and not s.endswith("T"):
        parts = {k: float(v) for k, v in m.groupdict().items() if v is not None}
        return timedelta(**parts)
    m = _CLOCK.match(s)
    if m:
        return timedelta(**{k: float(v) for k, v in m.groupdict().items() if v is not None})
    raise ValueError(f"not a duration: {text!r} (use ISO-8601 like PT4H or HH:MM:SS)")
