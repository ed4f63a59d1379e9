"""Condition edges of measurement/expression decisions: coverage, overlap, units, syntax.

The coverage arithmetic is checked against the router itself: ``holds()`` from the routing
core is the ground truth for which readings a condition accepts.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from schemas.graph import Condition, ProcessGraph
from services.definitions import cel, thresholds
from services.definitions.coverage import (
    HIGHEST,
    LOWEST,
    Span,
    above,
    below,
    describe,
    gaps,
    overlap,
)
from services.definitions.validation import Finding, validate
from services.router.routing.conditions import holds

START = {"id": "start", "type": "start"}
GAUGE = {"id": "gauge", "type": "decision", "decision_type": "measurement", "role": "inspector"}
ENDS = [{"id": "ok", "type": "terminal", "terminal_status": "completed"},
        {"id": "rework_end", "type": "terminal", "terminal_status": "hold"},
        {"id": "scrap", "type": "terminal", "terminal_status": "scrapped"}]


def gauge(*conditions: dict[str, Any], kind: str = "measurement") -> ProcessGraph:
    """start -> gauge, with one condition edge per condition to ok / rework_end / scrap."""
    used = ENDS[:max(1, min(3, len(conditions)))]  # an unused terminal would be unreachable
    edges = [{"from": "start", "to": "gauge"}]
    edges += [{"from": "gauge", "to": used[i % len(used)]["id"], "type": "condition",
               "condition": c} for i, c in enumerate(conditions)]
    steps = [START, {**GAUGE, "decision_type": kind}, *used]
    return ProcessGraph.model_validate({"key": "p", "steps": steps, "edges": edges})


def m(op: str, value: float | None = None, **fields: Any) -> dict[str, Any]:
    return {"measurement": "bore_mm", "operator": op,
            **({"value": value} if value is not None else {}), **fields}


def codes(graph: ProcessGraph) -> list[str]:
    return sorted(f.code for f in validate(graph))


def found(graph: ProcessGraph, code: str) -> list[Finding]:
    return [f for f in validate(graph) if f.code == code]


# --------------------------------------------------------------------------- examples


def test_complementary_thresholds_are_clean() -> None:
    assert validate(gauge(m("lt", 5), m("gte", 5))) == []
    assert validate(gauge(m("lt", 9.98), m("between", values=[9.98, 10.02]),
                          m("gt", 10.02))) == []


def test_point_gap_between_lt_and_gt() -> None:
    (f,) = found(gauge(m("lt", 5), m("gt", 5)), "conditions.gap")
    assert f.severity == "error" and f.step == "gauge"
    assert "bore_mm at 5" in f.message


def test_gap_on_both_sides_of_a_band() -> None:
    (f,) = found(gauge(m("between", values=[9.98, 10.02])), "conditions.gap")
    assert "< 9.98 or > 10.02" in f.message


def test_overlap_at_a_shared_closed_end() -> None:
    (f,) = found(gauge(m("lte", 5), m("gte", 5)), "conditions.overlap")
    assert "at 5" in f.message and f.edge == "gauge->rework_end"
    assert codes(gauge(m("lte", 5), m("gte", 5))) == ["conditions.overlap"]


def test_overlapping_ranges() -> None:
    g = gauge(m("lt", 6), m("gt", 4))
    (f,) = found(g, "conditions.overlap")
    assert "> 4 and < 6" in f.message


def test_tolerance_widens_eq_and_between_into_an_overlap() -> None:
    # Without tolerance `eq 5` fills the point gap exactly; with it, it overlaps both sides.
    assert validate(gauge(m("lt", 5), m("eq", 5), m("gt", 5))) == []
    assert codes(gauge(m("lt", 5), m("eq", 5, tolerance=0.1), m("gt", 5))) == [
        "conditions.overlap", "conditions.overlap"]
    assert codes(gauge(m("lt", 1), m("between", values=[1, 2], tolerance=0.5),
                       m("gt", 2))) == ["conditions.overlap", "conditions.overlap"]


def test_tolerance_on_a_one_sided_threshold_is_ignored_with_a_warning() -> None:
    g = gauge(m("lt", 5, tolerance=0.5), m("gte", 5))
    (f,) = validate(g)
    assert (f.code, f.severity) == ("conditions.tolerance_ignored", "warning")


def test_mixed_units_on_one_measurement() -> None:
    assert codes(gauge(m("lt", 5, unit="mm"), m("gte", 5, unit="in"))) == ["conditions.units"]
    (f,) = found(gauge(m("lt", 5, unit="mm"), m("gte", 5)), "conditions.units")
    assert "mm, no unit" in f.message


@pytest.mark.parametrize(("condition", "why"), [
    ({"measurement": "bore_mm"}, "no operator"),
    (m("between"), "without 'values'"),
    (m("between", values=[3, 1]), "low above high"),
    (m("gt"), "without 'value'"),
    (m("eq", 5, tolerance=-1), "tolerance"),
    ({"operator": "gt", "value": 1}, "neither a measurement nor an expression"),
    ({"measurement": "bore_mm", "expression": "true"}, "both"),
])
def test_malformed_conditions(condition: dict[str, Any], why: str) -> None:
    findings = found(gauge(condition, m("gte", 5)), "conditions.malformed")
    assert findings and why in findings[0].message, findings
    # A malformed condition is one finding, not also a gap it was probably meant to fill.
    assert "conditions.gap" not in codes(gauge(condition, m("gte", 5)))


def test_expression_fallback_suppresses_gaps_but_not_overlaps() -> None:
    assert validate(gauge(m("lt", 5), {"expression": "true"}, kind="expression")) == []
    assert codes(gauge(m("lt", 6), m("gt", 4), {"expression": "true"})) == [
        "conditions.overlap"]


def test_two_measurements_are_checked_separately_with_a_warning() -> None:
    g = gauge(m("lt", 5), m("gte", 5), {"measurement": "od_mm", "operator": "gt", "value": 1})
    assert codes(g) == ["conditions.gap", "conditions.measurements"]
    assert "od_mm <= 1" in found(g, "conditions.gap")[0].message


@pytest.mark.parametrize("expression", ["measurements.bore_mm >", "1 +* 2", "a.b(", ""])
def test_expression_must_parse(expression: str) -> None:
    (f,) = found(gauge({"expression": expression}, kind="expression"),
                 "conditions.expression_invalid")
    assert "does not parse as CEL" in f.message and f.edge == "gauge->ok"


def test_valid_expressions_pass_and_are_not_evaluated() -> None:
    # `x / 0` and an undefined function are fine syntax; only evaluation would fail.
    g = gauge({"expression": "m.bore_mm > 5.0 && outcome == 'pass'"},
              {"expression": "x / 0 > undefined_fn(1)"}, kind="expression")
    assert validate(g) == []


def test_overlong_expression_is_refused_without_parsing() -> None:
    expression = "x + " * 1500 + "1"
    assert cel.syntax_error(expression) is not None


def test_conditions_outside_evaluating_decisions_are_flagged() -> None:
    g = gauge(m("lt", 5), m("gte", 5), kind="qa_result")
    assert {(f.code, f.severity) for f in validate(g)} >= {("conditions.not_evaluated",
                                                          "warning")}


def test_describe() -> None:
    assert describe((5.0, 5.0)) == "at 5"
    assert describe((LOWEST, below(3.0))) == "< 3"
    assert describe((above(5.0), 6.0)) == "> 5 and <= 6"
    assert describe((LOWEST, HIGHEST)) == "any value"


# --------------------------------------------------------------------------- properties

OPS = ["gt", "gte", "lt", "lte", "eq", "between"]
# Values from a small grid collide often (shared ends, exact complements), which is where
# gaps and overlaps hide; arbitrary floats exercise rounding of tolerance bands.
values = st.one_of(st.integers(-4, 4).map(float), st.sampled_from([0.1, 0.2, 0.3, 9.98]),
                   st.floats(-1e6, 1e6, allow_nan=False))
tolerances = st.one_of(st.just(0.0), st.sampled_from([0.1, 0.5, 1.0]),
                       st.floats(0, 10, allow_nan=False))


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(OPS))
    tol = draw(tolerances)
    if op == "between":
        low, high = sorted((draw(values), draw(values)))
        return Condition(measurement="x", operator=op, values=(low, high), tolerance=tol)
    return Condition(measurement="x", operator=op, value=draw(values), tolerance=tol)


def covered(spans: list[Span], x: float) -> bool:
    return any(first <= x <= last for first, last in spans)


def probes(cs: list[Condition]) -> set[float]:
    """Every float where acceptance can change, give or take a few ULPs, and the extremes."""
    points = {LOWEST, HIGHEST, 0.0}
    for c in cs:
        ends = list(c.values or ()) + ([c.value] if c.value is not None else [])
        for v in ends:
            for base in (v, v - c.tolerance, v + c.tolerance):
                x = base
                for _ in range(4):
                    points |= {x, below(x), above(x)}
                    x = below(x)
                x = base
                for _ in range(4):
                    x = above(x)
                    points.add(x)
        # The computed ends too: where they are right, just outside must differ from inside.
        span = thresholds.span(c)
        if span is not None:
            points |= {span[0], span[1], below(span[0]), above(span[1])}
    return {p for p in points if math.isfinite(p)}


@settings(max_examples=400, deadline=None)
@given(conditions(), st.floats(allow_nan=False, allow_infinity=False))
@example(Condition(measurement="x", operator="eq", value=5.0, tolerance=0.1), 4.9)
@example(Condition(measurement="x", operator="eq", value=1e16, tolerance=0.1), 1e16 + 2)
@example(Condition(measurement="x", operator="eq", value=1.0, tolerance=1.0), -5e-324)
def test_span_matches_the_router_exactly(c: Condition, x: float) -> None:
    span = thresholds.span(c)
    assert (span is not None and span[0] <= x <= span[1]) == holds(c, x)
    for p in probes([c]):  # and at every boundary, where rounding would show
        assert (span is not None and span[0] <= p <= span[1]) == holds(c, p), p


@settings(max_examples=300, deadline=None)
@given(st.lists(conditions(), min_size=0, max_size=6))
def test_gap_is_flagged_iff_some_reading_matches_no_condition(cs: list[Condition]) -> None:
    spans = [s for c in cs if (s := thresholds.span(c)) is not None]
    missing = gaps(spans)
    # Ground truth: the router's own `holds`, at every point where coverage can change.
    uncovered = [p for p in probes(cs) if not any(holds(c, p) for c in cs)]
    assert bool(missing) == bool(uncovered)
    for p in uncovered:  # every uncovered reading lies in a reported gap...
        assert covered(missing, p)
    for first, last in missing:  # ...and every reported gap really is uncovered
        assert not any(holds(c, first) or holds(c, last) for c in cs)


@settings(max_examples=300, deadline=None)
@given(conditions(), conditions())
def test_overlap_is_flagged_iff_some_reading_matches_both(a: Condition, b: Condition) -> None:
    sa, sb = thresholds.span(a), thresholds.span(b)
    both = overlap(sa, sb) if sa is not None and sb is not None else None
    shared = [p for p in probes([a, b]) if holds(a, p) and holds(b, p)]
    assert (both is not None) == bool(shared)
    if both is not None:
        assert holds(a, both[0]) and holds(b, both[0]) and holds(a, both[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.booleans(),
                          st.booleans()), max_size=6))
def test_gaps_of_random_real_intervals(raw: list[tuple[int, int, bool, bool]]) -> None:
    """Random open/closed intervals (±6 standing for ±infinity): a gap iff the union is not
    the whole line, checked at every endpoint and between each pair of neighbours."""

    def end(v: int) -> float:
        return {-6: LOWEST, 6: HIGHEST}.get(v, float(v))

    spans: list[Span] = []
    for a, b, closed_a, closed_b in raw:
        lo, hi = min(a, b), max(a, b)
        first = end(lo) if closed_a or lo == -6 else above(end(lo))
        last = end(hi) if closed_b or hi == 6 else below(end(hi))
        if first <= last:
            spans.append((first, last))
    assume(all(LOWEST <= s[0] <= s[1] <= HIGHEST for s in spans))
    grid = [LOWEST, HIGHEST] + [v / 2 for v in range(-10, 11)]
    grid += [above(v) for v in grid[2:]] + [below(v) for v in grid[2:]]
    whole = all(covered(spans, p) for p in grid)
    assert (gaps(spans) == []) == whole
