"""Which offset of an input partition the router may commit: a pure rule, owned here.

faust-streaming 0.15.3 decides this itself (`Consumer._new_offset`) and loses records three
ways, all seen in the bench and e2e traces of 2026-11-22:

- with no committed offset yet (`None`) it commits whatever run of acked offsets comes
  first, so records it fetched and dropped while a rebalance suspended flow are skipped;
- its head-gap test is off by one (committed 31, first acked 32: it commits past 31);
- it marks offsets it never delivered as a "gap" and counts them as acknowledged.

The rule here: the commit point advances from the start (the committed offset, or the first
offset of the log when nothing is committed) only over offsets the agent acknowledged or
that were confirmed empty by reading the log (`StallHealer`: transaction markers and
compacted-away records leave such holes). Anything else stops it.
"""

from __future__ import annotations

from collections.abc import Iterable


def commit_point(start: int, acked: set[int], empty: Iterable[tuple[int, int]]) -> int | None:
    """The offset to commit (the next one to read), or None when nothing can advance.

    `acked` holds acknowledged offsets; `empty` holds half-open ranges [lo, hi) known to
    contain no record.
    """
    ranges = sorted(empty)
    position = start
    while True:
        if position in acked:
            position += 1
            continue
        hop = next((hi for lo, hi in ranges if lo <= position < hi), None)
        if hop is None:
            break
        position = hop
    return position if position > start else None


def hole(start: int, acked: Iterable[int], end: int | None) -> tuple[int, int] | None:
    """The offsets [start, x) that hold the commit back, if any.

    With acknowledged offsets beyond the start, the hole runs up to the first of them; with
    none, up to the end of the log (records fetched but never delivered, or never fetched).
    """
    first = min(acked, default=None)
    if first is not None:
        return (start, first) if first > start else None
    if end is not None and end > start:
        return start, end
    return None
