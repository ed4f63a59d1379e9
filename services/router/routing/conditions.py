"""Condition edges on decision steps: measurement thresholds and CEL expressions.

Measurement conditions: `gt gte lt lte eq between`, units and tolerance. Tolerance widens `eq`
and `between` (a gauge reading within tolerance of the nominal counts); one-sided thresholds are
exact, so complementary edges like `lt 5` / `gte 5` never overlap. Expression conditions: see
expressions.py. Edges are tried in order and the first that holds wins. A missing measurement, a
unit mismatch or an expression that fails is not guessed at: the instance goes on hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.graph import Condition, Edge, Operator, Step
from services.router.routing import expressions


@dataclass(frozen=True)
class Hold:
    """Routing cannot decide safely; put the instance on hold with this reason."""

    reason: str


@dataclass(frozen=True)
class Facts:
    """What expression conditions may read besides the measurements."""

    context: Mapping[str, Any]
    outcome: str | None
    visits: Mapping[str, int]
    priority: str


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
    step: Step, edges: list[Edge], measurements: dict[str, Any], facts: Facts
) -> Edge | Hold | None:
    """The first condition edge that holds; Hold when the inputs cannot be judged."""
    variables: expressions.Activation | None = None
    for edge in edges:
        condition = edge.condition
        assert condition is not None
        if condition.expression is not None:
            if variables is None:  # built once, and only for steps that have expressions
                variables = expressions.activation(numbers(measurements), facts.context,
                                                   facts.outcome, facts.visits, facts.priority)
            try:
                if expressions.evaluate(condition.expression, variables):
                    return edge
            except expressions.ExpressionError as exc:
                return Hold(f"{step.id}: expression {condition.expression!r} {exc}")
            continue
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


def numbers(measurements: dict[str, Any]) -> dict[str, Any]:
    """Measurements for expressions: readings flattened to their value as a float."""
    out = {}
    for name, raw in measurements.items():
        got = reading(measurements, name)
        out[name] = got[0] if got is not None else raw
    return out
