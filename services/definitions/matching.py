"""Category matching (seed 001): which process a ticket of department/category/sub_category uses.

Pure. Department and category must match exactly; a process for exactly the ticket's
sub_category beats a general one (no sub_category), and a process for another sub_category
never matches. Only each key's latest *approved* version takes part -- the same version the
router starts when no version is named -- so a paused or deprecated version is never offered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """One process key's latest approved version, with the metadata matching looks at."""

    key: str
    version: int
    approved_at: datetime
    graph: dict[str, Any]


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    exact: bool  # True: sub_category matched; False: a general process of the category


def best_match(candidates: Iterable[Candidate], department: str, category: str,
               sub_category: str | None) -> Match | None:
    """The best candidate for the ticket, or None.

    Among equally specific matches the most recently approved wins (then the key, so the
    answer is stable): a newer process for the same tickets is the one designers meant.
    """
    ranked: list[tuple[bool, datetime, str, Match]] = []
    for c in candidates:
        g = c.graph
        if g.get("department") != department or g.get("category") != category:
            continue
        own = g.get("sub_category")
        if own is None or own == "":
            match = Match(c, exact=False)
        elif sub_category is not None and own == sub_category:
            match = Match(c, exact=True)
        else:
            continue
        ranked.append((match.exact, c.approved_at, c.key, match))
    if not ranked:
        return None
    # Two stable sorts: by key ascending, then by (exact, newest) descending, so equal
    # (exact, time) pairs keep the smallest key first.
    ranked.sort(key=lambda r: r[2])
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return ranked[0][3]
