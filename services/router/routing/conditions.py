"""Measurement conditions on decision edges: `gt gte lt lte eq between`, units and tolerance.

Tolerance widens `eq` and `between` (a gauge reading within tolerance of the nominal counts);
one-sided thresholds are exact, so complementary edges like `lt 5` / `gte 5` never overlap.
A missing measurement or a unit mismatch is not guessed at: the instance goes on hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.graph import Condition, Edge, Operator, Step


@dataclass(frozen=True)
class Hold:
    """Routing cannot decide safely; put the instance on hold with this reason."""

    reason: str


def reading(measurements: dict[str, Any], name: str) -> tuple[float, str | None] | None:
    """A measurement as (value, unit): accepts `5.1` or `{"value": 5.1, "unit": "mm"}`."""
    raw = measurements.get(name)
    if isinstance(raw, dict):
        value, unit = raw.get("value"), raw.get("unit")
    else:
        value, unit = raw, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value), unit


def holds(condition: Condition, value: float) -> bool:
    op, tol = condition.operator, condition.tolerance
    if op == Operator.BETWEEN and condition.values is not None:
        low, high = condition.values
        return low - tol <= value <= high + tol
    if condition.value is None:
        return False
    target = condition.value
    return {
        Operator.GT: value > target,
        Operator.GTE: value >= target,
        Operator.LT: value < target,
        Operator.LTE: value <= target,
        Operator.EQ: abs(value - target) <= tol,
    }.get(op, False)  # type: ignore[arg-type]


def choose_condition_edge(
    step: Step, edges: list[Edge], measurements: dict[str, Any]
) -> Edge | Hold | None:
    """The first condition edge that holds; Hold when the inputs cannot be judged."""
    for edge in edges:
        condition = edge.condition
        assert condition is not None
        if condition.expression is not None:
            return Hold(f"{step.id}: expression conditions are not evaluated yet")
        if condition.measurement is None:
            continue
        got = reading(measurements, condition.measurement)
        if got is None:
            return Hold(f"{step.id}: measurement {condition.measurement!r} is missing "
                        "or not a number")
        value, unit = got
        if condition.unit and unit and unit != condition.unit:
            return Hold(f"{step.id}: {condition.measurement} is in {unit}, "
                        f"the condition expects {condition.unit}")
        if holds(condition, value):
            return edge
    return None
