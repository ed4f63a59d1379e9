"""Which measurement values a set of threshold conditions covers: gaps and overlaps. Pure.

The router compares Python floats, so coverage is worked out over floats too. Every set of
values a condition accepts is a *span*: a closed range ``(first, last)`` of finite floats.
Open ends become their neighbouring float (``lt 5`` is ``(LOWEST, below(5))``), which turns
gaps and overlaps into plain comparisons with no open/closed bookkeeping, and a "gap" between
two adjacent floats -- which no reading can fall into -- is rightly not a gap.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

Span = tuple[float, float]

LOWEST = -sys.float_info.max
HIGHEST = sys.float_info.max
WHOLE_LINE: Span = (LOWEST, HIGHEST)


def above(x: float) -> float:
    """The next float up (``inf`` above HIGHEST)."""
    return math.nextafter(x, math.inf)


def below(x: float) -> float:
    """The next float down (``-inf`` below LOWEST)."""
    return math.nextafter(x, -math.inf)


def clip(first: float, last: float) -> Span | None:
    """``(first, last)`` limited to finite floats; None when nothing is left."""
    first, last = max(first, LOWEST), min(last, HIGHEST)
    return (first, last) if first <= last else None


def gaps(spans: Iterable[Span]) -> list[Span]:
    """The finite floats no span covers, as spans in ascending order (empty: full cover)."""
    out: list[Span] = []
    uncovered = LOWEST  # the smallest float not yet known to be covered
    for first, last in sorted(spans):
        if first > uncovered:
            out.append((uncovered, below(first)))
        if last >= uncovered:
            uncovered = above(last)
        if uncovered > HIGHEST:  # covered up to the top: nothing more can be missing
            return out
    out.append((uncovered, HIGHEST))
    return out


def overlap(a: Span, b: Span) -> Span | None:
    """The floats both spans cover, or None."""
    first, last = max(a[0], b[0]), min(a[1], b[1])
    return (first, last) if first <= last else None


def describe(span: Span) -> str:
    """A span as a designer would write it: ``at 5``, ``< 3``, ``> 5 and <= 6``, ``any value``."""
    first, last = span
    if first == last:
        return f"at {number(first)}"
    parts = []
    if first != LOWEST:
        parts.append(_bound(first, below(first), ">=", ">"))
    if last != HIGHEST:
        parts.append(_bound(last, above(last), "<=", "<"))
    return " and ".join(parts) or "any value"


def number(x: float) -> str:
    """Shortest round-tripping text of ``x``, without a trailing ``.0``."""
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def _bound(inside: float, outside: float, inclusive: str, exclusive: str) -> str:
    # A gap next to `lt 5` starts at 5 itself, but next to `lte 5` at the float after 5:
    # say "> 5" rather than ">= 5.000000000000001", whichever number reads shorter.
    if len(number(outside)) < len(number(inside)):
        return f"{exclusive} {number(outside)}"
    return f"{inclusive} {number(inside)}"
