"""Duration parsing for SLAs and timers: ISO-8601 (``PT4H``, ``P1D``, ``P1DT2H30M``) or
``HH:MM:SS`` (hours may exceed 24, e.g. ``48:00:00``). Pure: standard library only.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta

# Years and months are refused on purpose: their length depends on the calendar, and an SLA
# that silently means "30 days" in one service and "a calendar month" in another is a bug.
_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CLOCK = re.compile(r"^(?P<hours>\d+):(?P<minutes>[0-5]\d):(?P<seconds>[0-5]\d(?:\.\d+)?)$")


@functools.lru_cache(maxsize=1024)  # the router parses each command's SLA: a few distinct texts
def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a timedelta; raise ValueError naming the accepted forms."""
    value = text.strip().upper()
    match = _ISO.match(value)
    # "P" and "PT" alone match the pattern with every group empty: not a duration.
    if match and value not in ("P", "PT") and not value.endswith("T"):
        parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
        return timedelta(**parts)
    match = _CLOCK.match(value)
    if match:
        return timedelta(**{k: float(v) for k, v in match.groupdict().items()})
    raise ValueError(
        f"{text!r} is not a duration: use ISO-8601 like PT4H, P1D, P1DT2H30M or HH:MM:SS"
    )
