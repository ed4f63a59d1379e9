"""The values a measurement condition accepts, exactly as the router evaluates it. Pure.

Mirrors ``holds()`` in ``services/router/routing/conditions.py`` (services may not import each
other, so the rule is restated here and a property test checks the two agree on every float):
one-sided thresholds (``gt gte lt lte``) are exact and ignore ``tolerance``; ``eq`` accepts
``abs(value - target) <= tolerance``; ``between`` accepts ``low - tol <= value <= high + tol``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from schemas.graph import Condition, Operator
from services.definitions.coverage import HIGHEST, LOWEST, Span, above, below, clip

ONE_SIDED = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})
_MAGNITUDE = (1 << 63) - 1
_SIGN = -(1 << 63)  # the sign bit, as a signed 64-bit integer


def problems(condition: Condition) -> list[str]:
    """Why a measurement condition cannot be evaluated as meant (empty: well formed)."""
    op = condition.operator
    if op is None:
        return ["has a measurement but no operator"]
    out = []
    if op == Operator.BETWEEN:
        if condition.values is None:
            out.append("uses 'between' without 'values': [low, high]")
        elif not all(map(math.isfinite, condition.values)):
            out.append("has a value that is not a finite number")
        elif condition.values[0] > condition.values[1]:
            out.append(f"has 'between' values {list(condition.values)} with low above high")
    elif condition.value is None:
        out.append(f"uses {op.value!r} without 'value'")
    elif not math.isfinite(condition.value):
        out.append("has a value that is not a finite number")
    if not math.isfinite(condition.tolerance) or condition.tolerance < 0:
        out.append(f"has tolerance {condition.tolerance}; it must be a number >= 0")
    return out


def span(condition: Condition) -> Span | None:
    """The finite floats ``condition`` accepts as one closed span; None when it accepts none."""
    op, tol = condition.operator, condition.tolerance
    if op == Operator.BETWEEN:
        if condition.values is None:
            return None
        low, high = condition.values
        # The router compares against these very sums, so their rounding is the rounding it uses.
        return clip(low - tol, high + tol)
    target = condition.value
    if target is None or math.isnan(target) or math.isnan(tol):
        return None
    if op == Operator.GT:
        return clip(above(target), HIGHEST)
    if op == Operator.GTE:
        return clip(target, HIGHEST)
    if op == Operator.LT:
        return clip(LOWEST, below(target))
    if op == Operator.LTE:
        return clip(LOWEST, target)
    if op == Operator.EQ:
        return _eq_span(target, tol)
    return None


def _eq_span(target: float, tol: float) -> Span | None:
    # `abs(x - target) <= tol` in floats: x - target rounds monotonically in x, so the accepted
    # floats are one contiguous run around target. Its ends are not simply target -/+ tol
    # (near zero the floats are dense: `eq 1 tol 1` accepts -5e-324, as 1 - 5e-324 rounds
    # to 1), so find them exactly by bisecting over the ordered floats.
    def inside(x: float) -> bool:
        return abs(x - target) <= tol

    if tol < 0 or not inside(target):
        return None
    first = _first_inside(inside, _order(LOWEST), _order(target))
    last = _last_inside(inside, _order(target), _order(HIGHEST))
    return clip(first, last)


def _first_inside(inside: Callable[[float], bool], lo: int, hi: int) -> float:
    """The first float in the ordered range [lo, hi] where ``inside`` (false, then true) holds."""
    while lo < hi:
        mid = (lo + hi) // 2
        if inside(_float(mid)):
            hi = mid
        else:
            lo = mid + 1
    return _float(lo)


def _last_inside(inside: Callable[[float], bool], lo: int, hi: int) -> float:
    """The last float in the ordered range [lo, hi] where ``inside`` (true, then false) holds."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if inside(_float(mid)):
            lo = mid
        else:
            hi = mid - 1
    return _float(lo)


def _order(x: float) -> int:
    """Floats as integers in the same order (adjacent floats are adjacent integers)."""
    bits: int = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & _MAGNITUDE)


def _float(n: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<q", n if n >= 0 else (-n) | _SIGN))[0]
    return value

