"""Validation rules (DESIGN §3): one graph per rule that breaks exactly that rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.durations import parse_duration
from schemas.graph import ProcessGraph
from services.definitions.graphs import strongly_connected
from services.definitions.templates import list_templates, load_template
from services.definitions.validation import Finding, validate

START = {"id": "start", "type": "start"}
DONE = {"id": "done", "type": "terminal", "terminal_status": "completed"}


def task(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", "role": "technician", **fields}


def edge(src: str, dst: str, kind: str = "default", **fields: Any) -> dict[str, Any]:
    return {"from": src, "to": dst, "type": kind, **fields}


def make(steps: list[dict[str, Any]], edges: list[dict[str, Any]], **extra: Any) -> ProcessGraph:
    return ProcessGraph.model_validate({"key": "p", "steps": steps, "edges": edges, **extra})


def simple(**extra: Any) -> ProcessGraph:
    """start -> work -> done: the smallest valid graph, for rules on SLAs and weights."""
    return make([START, task("work"), DONE], [edge("start", "work"), edge("work", "done")],
                **extra)


def only(graph: ProcessGraph, code: str) -> list[Finding]:
    """The graph's findings, asserting they are all of ``code`` (and there is at least one)."""
    findings = validate(graph)
    assert {f.code for f in findings} == {code}, findings
    return findings


def qa(step_id: str = "inspect", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "decision", "decision_type": "qa_result", **fields}


def test_minimal_graph_is_clean() -> None:
    assert validate(simple()) == []


def test_remanufacturing_template_is_clean() -> None:
    assert "remanufacturing" in list_templates()
    graph = ProcessGraph.model_validate(load_template("remanufacturing"))
    assert graph.key == "remanufacturing"
    assert validate(graph) == []


def test_unknown_template() -> None:
    with pytest.raises(KeyError):
        load_template("nope")


# --------------------------------------------------------------------------- structure


def test_start_count_two() -> None:
    g = make([START, {"id": "start2", "type": "start"}, task("work"), DONE],
             [edge("start", "work"), edge("start2", "work"), edge("work", "done")])
    assert only(g, "start.count")[0].step == "start2"


def test_start_count_none() -> None:
    only(make([task("work"), DONE], [edge("work", "done")]), "start.count")


def test_terminal_missing() -> None:
    """Without a terminal every path goes on forever: the loop is reported too, nothing else.

    (Every non-terminal step needs an outgoing edge, so a graph without terminals always has
    a loop; step.dead_end is not repeated for each step.)
    """
    g = make([START, task("a"), task("b")], [edge("start", "a"), edge("a", "b"), edge("b", "a")])
    assert {f.code for f in validate(g)} == {"terminal.missing", "cycle.unbounded"}


def test_terminal_status_missing_is_a_warning() -> None:
    g = make([START, task("work"), {"id": "done", "type": "terminal"}],
             [edge("start", "work"), edge("work", "done")])
    (finding,) = only(g, "terminal.status_missing")
    assert finding.severity == "warning" and finding.step == "done"


def test_duplicate_step_id() -> None:
    g = make([START, task("work"), task("work"), DONE],
             [edge("start", "work"), edge("work", "done")])
    assert only(g, "step.duplicate_id")[0].step == "work"


def test_edge_unknown_step() -> None:
    g = make([START, task("work"), DONE],
             [edge("start", "work"), edge("work", "done"), edge("work", "ghost", "alternate")])
    assert only(g, "edge.unknown_step")[0].edge == "work->ghost"


def test_self_loop() -> None:
    g = make([START, task("work"), DONE],
             [edge("start", "work"), edge("work", "done"), edge("work", "work", "alternate")])
    (finding,) = only(g, "edge.self_loop")
    assert (finding.step, finding.edge) == ("work", "work->work")


def test_condition_edge_without_condition() -> None:
    gauge = {"id": "gauge", "type": "decision", "decision_type": "measurement"}
    cond = {"measurement": "bore_mm", "operator": "lte", "value": 10.02}
    g = make([START, gauge, DONE, {"id": "scrap", "type": "terminal",
                                   "terminal_status": "scrapped"}],
             [edge("start", "gauge"), edge("gauge", "done", "condition", condition=cond),
              edge("gauge", "scrap", "condition")])
    assert only(g, "edge.condition_missing")[0].edge == "gauge->scrap"


# --------------------------------------------------------------------------- decisions


def _qa_graph(*edges: dict[str, Any], step: dict[str, Any] | None = None) -> ProcessGraph:
    steps = [START, step or qa(), task("fix"), DONE]
    return make(steps, [edge("start", "inspect"), edge("fix", "done"), *edges])


def test_qa_result_needs_pass() -> None:
    g = _qa_graph(edge("inspect", "fix", "alternate"))
    # done is still reachable through fix; only the missing pass edge is wrong.
    assert only(g, "decision.missing_pass")[0].step == "inspect"


def test_qa_result_needs_fail() -> None:
    g = make([START, qa(), DONE], [edge("start", "inspect"), edge("inspect", "done")])
    assert only(g, "decision.missing_fail")[0].step == "inspect"


def test_qa_result_ambiguous() -> None:
    g = _qa_graph(edge("inspect", "done"), edge("inspect", "fix"),
                  edge("inspect", "fix", "alternate"))
    only(g, "decision.ambiguous")


def test_decision_type_missing_is_a_warning() -> None:
    g = _qa_graph(edge("inspect", "done"), edge("inspect", "fix", "alternate"),
                  step={"id": "inspect", "type": "decision"})
    assert only(g, "decision.type_missing")[0].severity == "warning"


def test_manual_decision_needs_named_edge() -> None:
    choose = {"id": "choose", "type": "decision", "decision_type": "manual"}
    g = make([START, choose, DONE], [edge("start", "choose"), edge("choose", "done")])
    only(g, "decision.no_named_edge")


def test_manual_decision_duplicate_name() -> None:
    choose = {"id": "choose", "type": "decision", "decision_type": "manual"}
    g = make([START, choose, task("a"), DONE],
             [edge("start", "choose"), edge("choose", "done", name="ok"),
              edge("choose", "a", name="ok"), edge("a", "done")])
    only(g, "decision.duplicate_name")


@pytest.mark.parametrize("kind", ["measurement", "expression"])
def test_measurement_and_expression_need_conditions(kind: str) -> None:
    gauge = {"id": "gauge", "type": "decision", "decision_type": kind}
    g = make([START, gauge, DONE], [edge("start", "gauge"), edge("gauge", "done")])
    only(g, "decision.no_conditions")


def test_measurement_decision_with_conditions_is_clean() -> None:
    gauge = {"id": "gauge", "type": "decision", "decision_type": "measurement"}
    scrap = {"id": "scrap", "type": "terminal", "terminal_status": "scrapped"}
    ok = {"measurement": "bore_mm", "operator": "between", "values": [9.98, 10.02]}
    g = make([START, gauge, DONE, scrap],
             [edge("start", "gauge"), edge("gauge", "done", "condition", condition=ok),
              edge("gauge", "scrap", "condition", condition={"expression": "true"})])
    assert validate(g) == []


# --------------------------------------------------------------------------- outgoing edges


def test_task_needs_exactly_one_default_edge() -> None:
    g = make([START, task("work"), task("other"), DONE],
             [edge("start", "work"), edge("work", "done"), edge("work", "other"),
              edge("other", "done")])
    assert only(g, "step.default_edge_count")[0].step == "work"


def test_terminal_has_no_outgoing_edges() -> None:
    end2 = {"id": "end2", "type": "terminal", "terminal_status": "scrapped"}
    g = make([START, task("work"), DONE, end2],
             [edge("start", "work"), edge("work", "done"), edge("done", "end2")])
    assert only(g, "terminal.outgoing")[0].edge == "done->end2"


def test_rework_needs_max_visits() -> None:
    g = make([START, {"id": "rw", "type": "rework"}, DONE],
             [edge("start", "rw"), edge("rw", "done")])
    only(g, "rework.max_visits_missing")


def test_escalation_source_needs_max_visits() -> None:
    g = make([START, task("work"), DONE],
             [edge("start", "work"), edge("work", "done"), edge("work", "done", "escalation")])
    assert only(g, "escalation.source_unbounded")[0].edge == "work->done"


# --------------------------------------------------------------------------- flow


def test_unreachable_step() -> None:
    g = make([START, task("work"), task("orphan"), DONE],
             [edge("start", "work"), edge("work", "done"), edge("orphan", "done")])
    assert only(g, "step.unreachable")[0].step == "orphan"


def test_dead_end() -> None:
    """A trapped region: loop a<->b bounded by a, whose escalation only leads on to c -> a.

    Every step needs an outgoing edge, so a region that never reaches a terminal always holds
    a loop no visit limit breaks: cycle.unbounded accompanies step.dead_end by necessity.
    """
    g = make([START, qa(), task("a", max_visits=2), task("b"), task("c"), DONE],
             [edge("start", "inspect"), edge("inspect", "done"),
              edge("inspect", "a", "alternate"), edge("a", "b"), edge("b", "a"),
              edge("a", "c", "escalation"), edge("c", "a")])
    findings = validate(g)
    dead = {f.step for f in findings if f.code == "step.dead_end"}
    assert dead == {"a", "b", "c"}
    assert {f.code for f in findings} == {"step.dead_end", "cycle.unbounded"}


def test_unbounded_cycle() -> None:
    g = make([START, task("work"), qa(), DONE],
             [edge("start", "work"), edge("work", "inspect"), edge("inspect", "done"),
              edge("inspect", "work", "alternate")])
    (finding,) = only(g, "cycle.unbounded")
    assert finding.step == "work"


def test_max_visits_without_escalation_does_not_bound_a_cycle() -> None:
    g = make([START, task("work", max_visits=3), qa(), DONE],
             [edge("start", "work"), edge("work", "inspect"), edge("inspect", "done"),
              edge("inspect", "work", "alternate")])
    only(g, "cycle.unbounded")


def test_escalation_back_into_the_loop_does_not_bound_it() -> None:
    # rework escalates to review, which leads back to inspect: still an endless loop.
    rework = {"id": "rework", "type": "rework", "max_visits": 2}
    g = make([START, qa(), rework, task("review"), DONE],
             [edge("start", "inspect"), edge("inspect", "done"),
              edge("inspect", "rework", "alternate"), edge("rework", "inspect"),
              edge("rework", "review", "escalation"), edge("review", "inspect")])
    only(g, "cycle.unbounded")


def test_bounded_cycle_is_clean() -> None:
    rework = {"id": "rework", "type": "rework", "max_visits": 2}
    scrap = {"id": "scrap", "type": "terminal", "terminal_status": "scrapped"}
    g = make([START, qa(), rework, DONE, scrap],
             [edge("start", "inspect"), edge("inspect", "done"),
              edge("inspect", "rework", "alternate"), edge("rework", "inspect"),
              edge("rework", "scrap", "escalation")])
    assert validate(g) == []


# --------------------------------------------------------------------------- SLAs, weights, timers


def test_sla_order() -> None:
    findings = only(simple(slas={"urgent": "P1D", "high": "PT4H", "low": "P5D"}), "sla.order")
    assert "urgent" in findings[0].message


def test_sla_equal_is_out_of_order() -> None:
    only(simple(slas={"high": "08:00:00", "medium": "PT8H"}), "sla.order")


def test_sla_invalid_duration() -> None:
    only(simple(slas={"urgent": "four hours"}), "sla.invalid_duration")


def test_sla_in_order_is_clean() -> None:
    assert validate(simple(slas={"urgent": "PT4H", "high": "08:00:00", "medium": "P1D",
                                 "low": "P1W"})) == []


def test_weight_out_of_range() -> None:
    g = make([START, task("a", weight=1.5), task("b", weight=-0.5), DONE],
             [edge("start", "a"), edge("a", "b"), edge("b", "done")])
    assert {f.step for f in only(g, "weight.range")} == {"a", "b"}


def test_weights_not_summing_to_one_is_a_warning() -> None:
    g = make([START, task("a", weight=0.5), task("b", weight=0.4), DONE],
             [edge("start", "a"), edge("a", "b"), edge("b", "done")])
    assert only(g, "weight.sum")[0].severity == "warning"


def test_weights_within_tolerance_are_clean() -> None:
    g = make([START, task("a", weight=0.3335), task("b", weight=0.667), DONE],
             [edge("start", "a"), edge("a", "b"), edge("b", "done")])
    assert validate(g) == []


def test_timer_needs_a_duration() -> None:
    g = make([START, {"id": "cure", "type": "timer", "timer": "soon"}, DONE],
             [edge("start", "cure"), edge("cure", "done")])
    only(g, "timer.duration_invalid")


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT4H", 4 * 3600), ("P1D", 86400), ("P1DT2H30M", 95400), ("PT0.5S", 0.5),
    ("P2W", 14 * 86400), ("48:00:00", 48 * 3600), ("00:30:15", 1815),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "P1M", "4h", "1:2:3", "12:60:00"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_tarjan_is_iterative_on_long_chains() -> None:
    nodes = [f"n{i}" for i in range(5000)]
    adjacency = {a: [b] for a, b in zip(nodes, nodes[1:], strict=False)}
    adjacency[nodes[-1]] = [nodes[0]]
    assert strongly_connected(nodes, adjacency) == [nodes]


# --------------------------------------------------------------------------- property


@st.composite
def chains_with_rework(draw: st.DrawFn) -> ProcessGraph:
    """start -> t0 -> ... -> t(n-1) -> done, with QA gates whose rework loops back upstream."""
    n = draw(st.integers(1, 12))
    steps: list[dict[str, Any]] = [START, DONE]
    edges: list[dict[str, Any]] = []
    chain: list[str] = []
    for i in range(n):
        chain.append(f"t{i}")
        steps.append(task(f"t{i}"))
        if draw(st.booleans()):  # a QA gate after t_i, failing into a rework loop
            gate, rework = f"qa{i}", f"rw{i}"
            back_to = chain[draw(st.integers(0, len(chain) - 1))]
            steps += [qa(gate), {"id": rework, "type": "rework",
                                 "max_visits": draw(st.integers(1, 5)),
                                 "revisit_assignment": draw(st.sampled_from(
                                     ["any", "same", "different"]))}]
            edges += [edge(gate, rework, "alternate"), edge(rework, back_to),
                      edge(rework, "scrap", "escalation")]
            chain.append(gate)
    if any(e["type"] == "escalation" for e in edges):
        steps.append({"id": "scrap", "type": "terminal", "terminal_status": "scrapped"})
    order = ["start", *chain, "done"]
    edges += [edge(a, b) for a, b in zip(order, order[1:], strict=False)]
    return make(steps, edges)


@settings(max_examples=150, deadline=None)
@given(chains_with_rework())
def test_random_chains_with_bounded_rework_validate_clean(graph: ProcessGraph) -> None:
    assert validate(graph) == []


@settings(max_examples=100, deadline=None)
@given(chains_with_rework())
def test_removing_an_escalation_from_a_loop_is_caught(graph: ProcessGraph) -> None:
    escalations = [e for e in graph.edges if e.type == "escalation"]
    if not escalations:
        return
    first = escalations[0]
    broken = graph.model_copy(update={"edges": tuple(e for e in graph.edges if e is not first)})
    assert "cycle.unbounded" in {f.code for f in validate(broken)}
