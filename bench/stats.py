"""Percentiles without numpy."""

from __future__ import annotations

from collections.abc import Sequence


def percentiles(values: Sequence[float], digits: int = 2) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], digits)

    return {"n": len(ordered), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": round(ordered[-1], digits)}
