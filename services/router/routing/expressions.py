"""CEL expressions on condition edges, e.g. `measurements.bore > 10.0 && priority == "urgent"`.

Variables:
- `measurements`: name -> value; numbers and `{"value": .., "unit": ..}` readings become doubles
  (a gauge that sends `10` and one that sends `10.0` read the same), so compare with `10.0`;
  anything else is passed through as JSON.
- `context`: the instance's context variables.
- `outcome`: the completion's outcome, `""` when it names none.
- `visits`: step -> times entered. `priority`: the instance priority.

CEL is typed and side-effect free: a type mismatch (`measurements.count == 3` against the
double 3.0) or a missing key is an evaluation error, never a guess; the caller holds the
instance with the reason. Programs are compiled once per expression string and cached for the
life of the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import celpy
from celpy import celtypes

Activation = dict[str, Any]

_ENV: celpy.Environment | None = None
_PROGRAMS: dict[str, Any] = {}  # expression -> compiled program, or the reason it has none


class ExpressionError(ValueError):
    """The expression did not give a bool; the message says why."""


def activation(measurements: Mapping[str, Any], context: Mapping[str, Any], outcome: str | None,
               visits: Mapping[str, int], priority: str) -> Activation:
    """The variables an expression sees, as CEL values (`measurements` already flattened)."""
    return {
        "measurements": celpy.json_to_cel(dict(measurements)),
        "context": celpy.json_to_cel(dict(context)),
        "outcome": celtypes.StringType(outcome or ""),
        "visits": celpy.json_to_cel(dict(visits)),
        "priority": celtypes.StringType(priority),
    }


def evaluate(expression: str, variables: Activation) -> bool:
    """The expression's value; ExpressionError when it fails or is not a bool."""
    program = _program(expression)
    if isinstance(program, str):
        raise ExpressionError(program)
    try:
        result = program.evaluate(variables)
    except Exception as exc:  # celpy raises its own and Python's errors alike
        raise ExpressionError(f"failed: {_why(exc)}") from exc
    if isinstance(result, Exception):  # celpy may also return an error as the value
        raise ExpressionError(f"failed: {_why(result)}")
    if not isinstance(result, celtypes.BoolType):
        raise ExpressionError(f"gave {type(result).__name__} {result!r}, not a bool")
    return bool(result)


def _program(expression: str) -> Any:
    global _ENV
    if expression not in _PROGRAMS:
        if _ENV is None:
            _ENV = celpy.Environment()  # builds the parser once (~0.15 s)
        try:
            _PROGRAMS[expression] = _ENV.program(_ENV.compile(expression))
        except Exception as exc:
            _PROGRAMS[expression] = f"does not compile: {_why(exc)}"
    return _PROGRAMS[expression]


def _why(exc: BaseException) -> str:
    first = exc.args[0] if exc.args else exc
    return str(first).splitlines()[0][:300]
