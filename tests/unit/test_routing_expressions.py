"""CEL expression conditions on decision edges (routing/expressions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.messages import RejectReason
from services.router.routing import expressions
from tests.unit.flows import START, World, process
from tests.unit.graphs import compiled


def gauge(*conditions: str, decision_type: str = "expression") -> dict[str, Any]:
    """start -> gauge -> e0 | e1 | ... (one terminal per condition, in edge order)."""
    ends = [{"id": f"e{i}", "type": "terminal"} for i in range(len(conditions))]
    return process("expr", [START, {"id": "gauge", "type": "decision",
                                    "decision_type": decision_type}, *ends],
                   [("start", "gauge"),
                    *({"from": "gauge", "to": f"e{i}", "type": "condition",
                       "condition": {"expression": c}} for i, c in enumerate(conditions))])


def route(graph: dict[str, Any], outcome: str | None = None, **kw: Any) -> World:
    w = World(compiled(graph))
    w.start("expr", context=kw.pop("context", {}), priority=kw.pop("priority", "medium"))
    w.done("gauge", outcome, **kw)
    return w


def ended_at(w: World) -> str | None:
    assert w.state().status == "completed", w.state().hold_reason
    return next(e.step for _, d in w.log for e in d.events if e.kind == "completed")


def test_measurements_route_the_part_and_readings_are_doubles():
    g = gauge("measurements.bore > 10.0", "measurements.bore <= 10.0")
    assert ended_at(route(g, measurements={"bore": {"value": 10.2, "unit": "mm"}})) == "e0"
    assert ended_at(route(g, measurements={"bore": 10})) == "e1"  # an int reads as 10.0


def test_context_priority_visits_and_outcome_are_visible():
    g = gauge('context.customer == "ACME" && priority == "urgent"',
              'visits["gauge"] == 1 && outcome == "ok"')
    w = route(g, context={"customer": "ACME"}, priority="urgent")
    assert ended_at(w) == "e0"
    w = route(g, "ok", context={"customer": "other"})
    assert ended_at(w) == "e1"


def test_edges_are_tried_in_order_and_the_first_true_wins():
    g = gauge("measurements.v > 1.0", "measurements.v > 0.0")
    assert ended_at(route(g, measurements={"v": 5.0})) == "e0"
    assert ended_at(route(g, measurements={"v": 0.5})) == "e1"


def test_no_true_expression_is_rejected_and_the_instance_stays():
    w = World(compiled(gauge("measurements.v > 1.0")))
    w.start("expr")
    d = w.done("gauge", measurements={"v": 0.5})
    assert d.rejection and d.rejection.reason == RejectReason.NO_MATCHING_EDGE
    assert w.at() == ["gauge"] and w.state().status == "running"


@pytest.mark.parametrize(("expression", "why"), [
    ("measurements.missing > 1.0", "no such member"),
    ("measurements.v == 2", "no matching overload"),  # double vs int: CEL does not guess
    ("measurements.v", "not a bool"),
    ("measurements.v >", "does not compile"),
])
def test_an_expression_that_fails_holds_with_the_reason(expression, why):
    w = route(gauge(expression), measurements={"v": 2.0})
    s = w.state()
    assert s.status == "on_hold" and s.active == {"gauge": 1}
    assert expression in (s.hold_reason or "") and why in (s.hold_reason or "")


def test_measurement_and_expression_conditions_mix_in_edge_order():
    g = gauge('context.rush == true', decision_type="measurement")
    g["steps"].append({"id": "slow", "type": "terminal"})
    g["edges"].append({"from": "gauge", "to": "slow", "type": "condition", "condition": {
        "measurement": "v", "operator": "gte", "value": 0}})
    assert ended_at(route(g, context={"rush": True}, measurements={"v": 1})) == "e0"
    assert ended_at(route(g, context={"rush": False}, measurements={"v": 1})) == "slow"


def test_a_named_outcome_still_wins_over_conditions():
    g = gauge("measurements.v > 1.0")
    g["steps"].append({"id": "skip", "type": "terminal"})
    g["edges"].append({"from": "gauge", "to": "skip", "name": "override"})
    assert ended_at(route(g, "override", measurements={"v": 5.0})) == "skip"


def test_programs_are_compiled_once_per_expression():
    expression = "measurements.cached_once > 0.0"
    variables = expressions.activation({"cached_once": 1.0}, {}, None, {}, "medium")
    assert expressions.evaluate(expression, variables) is True
    program = expressions._PROGRAMS[expression]
    assert expressions.evaluate(expression, variables) is True
    assert expressions._PROGRAMS[expression] is program
