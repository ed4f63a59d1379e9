"""A hold raised by routing keeps what it interrupted, and the resume retries it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.messages import ControlInstance, InstanceAction, StartInstance, Subject
from services.router.routing import InstanceState, decide
from tests.unit import test_routing_hold_subprocess as hold_subprocess
from tests.unit.flows import DONE, START, World, process, task
from tests.unit.graphs import compiled, gauged, reman
from tests.unit.test_routing import Driver, walk_to_inspect
from tests.unit.test_routing_hold_subprocess import end_child
from tests.unit.test_routing_migration import renamed
from tests.unit.test_routing_subprocess import CHILD, sub

T1 = datetime(2026, 1, 2, 8, 0, tzinfo=UTC)
HELD_AT_REWORK = {"step": "rework", "reason": "fail", "lane": None, "leave": False}
REASON = "rework reached max_visits=3 and has no escalation edge"


def no_escalation() -> dict[str, Any]:
    g = reman()
    g["edges"] = [e for e in g["edges"] if e.get("type") != "escalation"]
    return g


def held_at_max_visits() -> Driver:
    d = Driver(compiled(no_escalation(), 1))
    walk_to_inspect(d)
    for _ in range(3):
        d.done("inspect", "fail")
        d.done("rework")
    d.done("inspect", "fail")
    assert d.state and d.state.status == "on_hold" and d.state.hold_reason == REASON
    return d


def control(d: Driver, action: InstanceAction, **kw: Any):
    return d.feed(ControlInstance(instance_id="p1", action=action, **kw))


def migrate_to(d: Driver, graph: dict[str, Any], **kw: Any) -> None:
    target = compiled(graph, version=2)
    out = decide(d.graph, d.state, ControlInstance(
        instance_id="p1", action=InstanceAction.MIGRATE, to_version=2, **kw), "m1", T1, target)
    assert out.rejection is None and out.state is not None
    d.graph, d.state = target, out.state


def test_a_max_visits_hold_keeps_the_token_it_stopped():
    d = held_at_max_visits()
    assert d.state and d.state.active == {} and d.state.pending == [HELD_AT_REWORK]


def test_migrate_to_a_version_with_the_escalation_edge_then_resume_enters_the_scrap_decision():
    d = held_at_max_visits()
    migrate_to(d, reman())
    assert d.state and d.state.status == "on_hold" and d.state.pending == [HELD_AT_REWORK]
    dec = control(d, InstanceAction.RESUME)
    assert [(e.kind, e.step) for e in dec.events] == [
        ("resumed", None), ("escalated", "rework"), ("step_entered", "scrap_decision")]
    assert [(c.command_id, c.reason) for c in dec.commands] == [
        ("p1/scrap_decision/1", "escalated")]
    assert d.state.status == "running" and d.state.pending == [] and d.at == ["scrap_decision"]
    assert {e.source_event_id for e in dec.events} == {f"e{d.n}"}
    d.done("scrap_decision", "scrap")
    assert d.state.terminal_status == "scrapped"


def test_a_migration_that_renames_the_held_step_carries_the_token_over():
    d = held_at_max_visits()
    migrate_to(d, renamed(reman(), "rework", "repair"), step_map={"rework": "repair"})
    assert d.state and d.state.pending == [{**HELD_AT_REWORK, "step": "repair"}]
    dec = control(d, InstanceAction.RESUME)
    escalated = next(e for e in dec.events if e.kind == "escalated")
    assert (escalated.step, escalated.to_step) == ("repair", "scrap_decision")
    assert d.at == ["scrap_decision"]


def test_resume_without_a_fix_holds_again_with_the_same_reason_and_sends_nothing():
    d = held_at_max_visits()
    before = d.state.to_dict() if d.state else None
    for _ in range(2):
        dec = control(d, InstanceAction.RESUME)
        assert dec.rejection is None and dec.commands == [] and dec.requests == []
        assert [(e.kind, e.reason) for e in dec.events] == [("resumed", None),
                                                           ("held", REASON)]
        assert d.state and d.state.status == "on_hold" and d.state.hold_reason == REASON
        assert d.state.pending == [HELD_AT_REWORK] and d.state.active == {}
        assert d.state.visits == (before or {})["visits"]
    migrate_to(d, reman())
    dec = control(d, InstanceAction.RESUME)
    assert [c.command_id for c in dec.commands] == ["p1/scrap_decision/1"]


def test_the_retry_is_deterministic():
    d = held_at_max_visits()
    migrate_to(d, reman())
    resume = ControlInstance(instance_id="p1", action=InstanceAction.RESUME)
    first, again = (decide(d.graph, d.state, resume, "r1", T1) for _ in range(2))
    assert first == again and d.state and d.state.pending == [HELD_AT_REWORK]


def test_cancel_drops_the_kept_tokens():
    d = held_at_max_visits()
    control(d, InstanceAction.CANCEL)
    assert d.state and d.state.status == "cancelled" and d.state.pending == []


def test_a_join_without_a_default_edge_is_left_at_the_resume_once_it_has_one():
    g = {"key": "par", "steps": [
        {"id": "s", "type": "start"}, {"id": "split", "type": "parallel"},
        {"id": "a", "type": "task"}, {"id": "b", "type": "task"}, {"id": "join", "type": "join"},
        {"id": "done", "type": "terminal"}],
        "edges": [{"from": "s", "to": "split"}, {"from": "split", "to": "a"},
                  {"from": "split", "to": "b"}, {"from": "a", "to": "join"},
                  {"from": "b", "to": "join"}]}
    d = Driver(compiled(g))
    d.feed(StartInstance(instance_id="p1", process="par", subject=Subject(type="p", id="1")))
    d.done("a")
    d.done("b")
    assert d.state and d.state.status == "on_hold"
    assert d.state.hold_reason == "join join has no default edge"
    assert d.state.pending == [{"step": "join", "reason": "joined", "lane": None,
                                "leave": True}]
    again = control(d, InstanceAction.RESUME)
    assert [e.kind for e in again.events] == ["resumed", "held"]  # no second step_completed
    assert d.state.hold_reason == "join join has no default edge"
    migrate_to(d, {**g, "edges": [*g["edges"], {"from": "join", "to": "done"}]})
    dec = control(d, InstanceAction.RESUME)
    assert [(e.kind, e.step) for e in dec.events] == [
        ("resumed", None), ("step_entered", "done"), ("completed", "done")]
    assert d.state.status == "completed" and d.state.pending == []


def test_a_missing_measurement_hold_leaves_the_step_for_a_corrected_completion():
    d = Driver(compiled(gauged()))
    d.feed(StartInstance(instance_id="p1", process="m", subject=Subject(type="p", id="1")))
    d.done("gauge")
    assert d.state and d.state.status == "on_hold" and "bore" in (d.state.hold_reason or "")
    # The completion cannot be retried as it was: nothing is kept, the step stays active.
    assert d.state.active == {"gauge": 1} and d.state.pending == []
    dec = control(d, InstanceAction.RESUME)
    assert [e.kind for e in dec.events] == ["resumed"] and dec.commands == []
    assert d.state.status == "running" and d.at == ["gauge"]
    d.done("gauge", measurements={"bore": {"value": 10.0, "unit": "mm"}}, visit=1)
    assert d.state.status == "completed" and d.state.terminal_status == "completed"


def test_the_kept_tokens_round_trip_and_old_states_load():
    d = held_at_max_visits()
    assert d.state is not None
    stored = d.state.to_dict()
    assert stored["pending"] == [HELD_AT_REWORK]
    assert InstanceState.from_dict(stored) == d.state
    old = {k: v for k, v in stored.items() if k != "pending"}
    loaded = InstanceState.from_dict(old)
    assert loaded.pending == [] and loaded.status == "on_hold"
    # Such a state resumes as before: nothing kept, nothing retried.
    dec = decide(d.graph, loaded, ControlInstance(instance_id="p1",
                                                  action=InstanceAction.RESUME), "r1", T1)
    assert dec.state and dec.state.status == "running" and dec.commands == []


def test_a_childs_kept_completion_applies_before_the_held_token_is_retried():
    # One branch waits on a child; the other reaches a timer that cannot be set: a hold.
    steps = [START, {"id": "split", "type": "parallel"}, sub("a"), task("t"),
             {"id": "wait", "type": "timer", "timer": "soon"}, {"id": "join", "type": "join"},
             DONE]
    edges = [("start", "split"), ("split", "a"), ("split", "t"), ("t", "wait"), ("a", "join"),
             ("wait", "join"), ("join", "done")]
    w = World(compiled(process("broken", steps, edges)), compiled(CHILD))
    w.start("broken")
    w.done("t")
    token = {"step": "wait", "reason": "completed", "lane": {"split": "split/1", "branch": "t"},
             "leave": False}
    assert w.state().status == "on_hold" and w.state().pending == [token]
    eid, _ = end_child(w, "pass", "p1/a/1")
    d = hold_subprocess.control(w, InstanceAction.RESUME, "r1")
    assert [(e.kind, e.step, e.source_event_id) for e in d.events] == [
        ("resumed", None, "r1"), ("step_completed", "a", eid), ("step_entered", "join", eid),
        ("held", None, "r1")]
    s = w.state()
    assert (s.status, s.deferred, s.pending) == ("on_hold", [], [token])
    assert "timer step wait" in (s.hold_reason or "")
    # Nothing waits for the resume but the token, so a migration that fixes the timer may run.
    steps[4] = {**steps[4], "timer": "PT1H"}
    fixed = compiled(process("broken", steps, edges), version=2)
    w.graphs["broken"][2] = fixed
    out = decide(w.graph_for(ControlInstance(instance_id="p1", action=InstanceAction.RESUME)),
                 s, ControlInstance(instance_id="p1", action=InstanceAction.MIGRATE,
                                    to_version=2), "m1", T1, fixed)
    assert out.rejection is None and out.state is not None
    w.states["p1"] = out.state
    d = hold_subprocess.control(w, InstanceAction.RESUME, "r2")
    assert [(e.kind, e.step) for e in d.events] == [("resumed", None), ("step_entered", "wait")]
    assert [c.command_id for c in d.commands] == ["p1/wait/1"] and d.commands[0].wake_at
    w.done("wait", visit=1)
    assert w.state().terminal_status == "completed"
