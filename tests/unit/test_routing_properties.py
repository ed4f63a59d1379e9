"""Invariants of routing, over random graphs with rework loops and random completions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.messages import StartInstance, StepCompletion, Subject
from services.router.routing import decide
from tests.unit.graphs import compiled

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def looped_graphs(draw: Any) -> dict[str, Any]:
    """A chain of tasks and QA decisions; each decision's fail edge goes to a bounded rework
    loop that escalates to a manual scrap decision (the seed 000 pattern, repeated)."""
    n = draw(st.integers(1, 6))
    steps: list[dict[str, Any]] = [{"id": "start", "type": "start"},
                                   {"id": "done", "type": "terminal"},
                                   {"id": "scrapped", "type": "terminal",
                                    "terminal_status": "scrapped"},
                                   {"id": "scrap", "type": "decision", "decision_type": "manual"}]
    edges: list[dict[str, Any]] = [{"from": "scrap", "to": "scrapped", "name": "scrap"},
                                   {"from": "scrap", "to": "done", "name": "accept"}]
    prev = "start"
    for i in range(n):
        if draw(st.booleans()):
            steps.append({"id": f"s{i}", "type": "task"})
        else:
            steps.append({"id": f"s{i}", "type": "decision", "decision_type": "qa_result"})
            back = draw(st.sampled_from([f"s{j}" for j in range(i + 1)]))
            steps.append({"id": f"r{i}", "type": "rework",
                          "max_visits": draw(st.integers(1, 4))})
            edges += [{"from": f"s{i}", "to": f"r{i}", "type": "alternate"},
                      {"from": f"r{i}", "to": back},
                      {"from": f"r{i}", "to": "scrap", "type": "escalation"}]
        edges.append({"from": prev, "to": f"s{i}"})
        prev = f"s{i}"
    edges.append({"from": prev, "to": "done"})
    return {"key": "g", "steps": steps, "edges": edges}


def run(graph_json: dict[str, Any], choices: list[int]) -> list[Any]:
    g = compiled(graph_json)
    limits = {s.id: s.max_visits for s in g.version.steps if s.max_visits}
    d = decide(g, None, StartInstance(instance_id="i", process="g",
                                      subject=Subject(type="t", id="1")), "e0", T0)
    state, trace = d.state, [d]
    for n, choice in enumerate(choices, 1):
        assert state is not None
        if state.status != "running":
            break
        step = sorted(state.active)[0]
        outcomes = g.outcomes(g.steps[step]) or [None]
        outcome = outcomes[choice % len(outcomes)]
        d = decide(g, state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                   f"e{n}", T0 + timedelta(seconds=n))
        # a duplicate of what was just applied is a no-op
        assert decide(g, d.state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                      f"e{n}", T0).duplicate
        state = d.state or state
        trace.append(d)
        for cmd in d.commands:
            assert cmd.step in g.steps, "every command targets a step of its version"
            assert cmd.visit == state.visits[cmd.step]
        for step_id, limit in limits.items():
            assert state.visits.get(step_id, 0) <= limit, "visits never exceed max_visits"
        if state.status == "running":
            assert state.active, "a running instance always waits on a step"
        else:
            assert state.status == "completed" and not state.active and state.terminal_status
    return trace


@settings(max_examples=200, deadline=None)
@given(looped_graphs(), st.lists(st.integers(0, 5), max_size=80))
def test_invariants_hold_on_random_walks(graph_json, choices):
    run(graph_json, choices)


@settings(max_examples=50, deadline=None)
@given(looped_graphs(), st.lists(st.integers(0, 5), max_size=40))
def test_routing_is_deterministic(graph_json, choices):
    assert run(graph_json, choices) == run(graph_json, choices)


@settings(max_examples=100, deadline=None)
@given(looped_graphs())
def test_always_failing_still_terminates(graph_json):
    """Fail every decision: bounded loops must still bring the part to an end."""
    g = compiled(graph_json)
    state = decide(g, None, StartInstance(instance_id="i", process="g",
                                          subject=Subject(type="t", id="1")), "e0", T0).state
    for n in range(1, 500):
        assert state is not None
        if state.status != "running":
            break
        step = sorted(state.active)[0]
        outcome = "fail" if g.steps[step].type.value == "decision" else None
        if step == "scrap":
            outcome = "scrap"
        state = decide(g, state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                       f"e{n}", T0).state or state
    assert state is not None and state.status == "completed"
