"""A child that ends while its parent is held: its completion waits for the parent's resume."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.messages import ControlInstance, InstanceAction, RejectReason, StepCompletion
from services.router.routing import Decision, InstanceState, decide
from tests.unit.flows import DONE, SCRAPPED, START, T0, World, process, task
from tests.unit.graphs import compiled
from tests.unit.test_routing_subprocess import CHILD, parent, sub

HOLD, RESUME, CANCEL = InstanceAction.HOLD, InstanceAction.RESUME, InstanceAction.CANCEL

# start -> split -> (a: clean, b: clean) -> join -> done; a scrapped child scraps the parent.
PAIR = process("pair", [START, {"id": "split", "type": "parallel"}, sub("a"), sub("b"),
                        {"id": "join", "type": "join"}, DONE, SCRAPPED],
               [("start", "split"), ("split", "a"), ("split", "b"), ("a", "join"),
                ("b", "join"), ("a", "scrapped", "alternate"),
                ("b", "scrapped", "alternate"), ("join", "done")])


def control(w: World, action: InstanceAction, event_id: str | None = None,
            instance: str = "p1") -> Decision:
    return w.feed(ControlInstance(instance_id=instance, action=action), event_id)


def end_child(w: World, outcome: str, child: str = "p1/sub/1") -> tuple[str, Decision]:
    """The child passes or fails its check; the (event id, decision) of its parent's completion."""
    w.done("wash", instance=child)
    w.done("check", outcome, instance=child)
    eid, d = w.log[-1]
    assert eid.endswith("/req/0") and isinstance(d.state, InstanceState)
    assert d.state.instance_id == child.rsplit("/", 2)[0]
    return eid, d


def held_parent_with_ended_child(outcome: str = "pass") -> tuple[World, str]:
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    control(w, HOLD)
    eid, _ = end_child(w, outcome)
    return w, eid


def test_a_child_that_ends_while_its_parent_is_held_is_kept_not_rejected():
    w, eid = held_parent_with_ended_child()
    kept = w.log[-1][1]
    assert kept.rejection is None and not kept.duplicate
    assert (kept.commands, kept.events, kept.requests) == ([], [], [])
    s = w.state()
    assert (s.status, w.at()) == ("on_hold", ["sub"])
    assert s.deferred == [{"event_id": eid, "completion": {
        "instance_id": "p1", "step": "sub", "visit": 1, "outcome": "completed",
        "measurements": {}, "note": "subprocess p1/sub/1 ended: completed"}}]
    assert w.state("p1/sub/1").status == "completed"


@pytest.mark.parametrize(("outcome", "onward"), [("pass", "ship"), ("fail", "fix")])
def test_the_resume_leaves_the_subprocess_step_along_the_childs_outcome(outcome: str,
                                                                        onward: str):
    w, eid = held_parent_with_ended_child(outcome)
    d = control(w, RESUME, "r1")
    assert d.rejection is None and w.at() == [onward]
    assert [(e.kind, e.step, e.outcome, e.source_event_id) for e in d.events] == [
        ("resumed", None, None, "r1"),
        ("step_completed", "sub", "completed" if outcome == "pass" else "scrapped", eid),
        ("step_entered", onward, None, eid)]
    assert [c.command_id for c in d.commands] == [f"p1/{onward}/1"]
    s = w.state()
    assert (s.status, s.deferred, s.operators["sub"]) == ("running", [], [None])
    assert "r1" in s.recent_event_ids
    w.done(onward)
    assert w.state().terminal_status == "completed"


def test_the_resume_routes_like_a_completion_that_arrived_while_running():
    w, _ = held_parent_with_ended_child()
    resumed = control(w, RESUME)
    ran = World(compiled(parent()), compiled(CHILD))
    ran.start("reman")
    _, direct = end_child(ran, "pass")

    def same(d: Decision, drop: set[str]) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.dump().items() if k not in drop}
                for m in [*d.commands, *d.events] if m.dump().get("kind") != "resumed"]

    assert same(resumed, {"at", "entered_at", "due_at", "source_event_id"}) == \
        same(direct, {"at", "entered_at", "due_at", "source_event_id"})
    assert resumed.requests == direct.requests == []


def test_the_resume_decision_is_deterministic():
    w, _ = held_parent_with_ended_child()
    graph, held = w.graph_for(ControlInstance(instance_id="p1", action=RESUME)), w.state()
    resume = ControlInstance(instance_id="p1", action=RESUME, operator="alice")
    first, again = (decide(graph, held, resume, "r1", T0) for _ in range(2))
    assert first == again and first.state is not None
    assert held.deferred and held.status == "on_hold"  # `decide` changed only its copy


def test_a_routing_hold_keeps_the_childs_completion_the_same_way():
    # One branch waits on a child; the other reaches a timer that cannot be set: a hold.
    broken = process("broken", [START, {"id": "split", "type": "parallel"}, sub("a"),
                                task("t"), {"id": "wait", "type": "timer", "timer": "soon"},
                                {"id": "join", "type": "join"}, DONE],
                     [("start", "split"), ("split", "a"), ("split", "t"), ("t", "wait"),
                      ("a", "join"), ("wait", "join"), ("join", "done")])
    w = World(compiled(broken), compiled(CHILD))
    w.start("broken")
    w.done("t")
    assert w.state().status == "on_hold" and "timer step wait" in (w.state().hold_reason or "")
    eid, kept = end_child(w, "pass", "p1/a/1")
    assert kept.rejection is None and kept.events == []
    d = control(w, RESUME, "r1")
    # The kept completion applies first; then the stopped token is retried and, the timer
    # still being broken, holds the instance again (test_routing_hold_resume.py).
    assert [(e.kind, e.step, e.source_event_id) for e in d.events[1:]] == [
        ("step_completed", "a", eid), ("step_entered", "join", eid), ("held", None, "r1")]
    assert w.state().status == "on_hold" and w.state().deferred == []


def test_a_redelivered_deferred_completion_is_applied_once():
    w, eid = held_parent_with_ended_child()
    request = StepCompletion.model_validate(w.state().deferred[0]["completion"])
    assert w.feed(request, eid).duplicate
    # Further back than the recent ids remember, the kept completion still knows its id.
    w.states["p1"].recent_event_ids.clear()
    again = w.feed(request, eid)
    assert again.duplicate and again.state is None and again.rejection is None
    assert len(w.state().deferred) == 1
    d = control(w, RESUME)
    assert [e.step for e in d.events if e.kind == "step_completed"] == ["sub"]
    assert w.at() == ["ship"] and w.state().operators["sub"] == [None]
    late = w.feed(request, eid)
    assert late.rejection and late.rejection.reason == RejectReason.STALE


def test_a_second_completion_for_the_kept_visit_is_stale():
    w, eid = held_parent_with_ended_child()
    d = w.feed(StepCompletion(instance_id="p1", step="sub", visit=1, outcome="scrapped"), "x")
    assert d.rejection and d.rejection.reason == RejectReason.STALE
    assert "already waits" in d.rejection.detail
    assert [k["event_id"] for k in w.state().deferred] == [eid]


def test_cancelling_the_held_parent_drops_what_was_kept_and_cancels_no_ended_child():
    w, _ = held_parent_with_ended_child()
    d = control(w, CANCEL)
    assert d.requests == [] and [e.kind for e in d.events] == ["cancelled"]
    s = w.state()
    assert (s.status, s.active, s.deferred) == ("cancelled", {}, [])
    late = control(w, RESUME)
    assert late.rejection and late.rejection.reason == RejectReason.INVALID_TRANSITION


@pytest.mark.parametrize("completion", [
    StepCompletion(instance_id="p1", step="prep"),  # a task step
    StepCompletion(instance_id="p1", step="sub"),  # no visit: not a child's completion
    StepCompletion(instance_id="p1", step="sub", visit=2, outcome="completed"),
    StepCompletion(instance_id="p1", step="ship"),  # not active
], ids=["task", "no-visit", "other-visit", "inactive"])
def test_other_completions_to_a_held_instance_are_still_rejected(completion: StepCompletion):
    prep_first = process("prep", [START, task("prep"), sub("sub"), task("ship"), DONE],
                         [("start", "prep"), ("prep", "sub"), ("sub", "ship"),
                          ("ship", "done")])
    w = World(compiled(prep_first), compiled(CHILD))
    w.start("prep")
    if completion.step != "prep":
        w.done("prep")
    control(w, HOLD)
    d = w.feed(completion)
    assert d.rejection and d.rejection.reason == RejectReason.INSTANCE_NOT_RUNNING
    assert d.state is None and w.state().deferred == []


def test_an_outcome_the_step_has_no_edge_for_is_rejected_when_it_arrives():
    no_alternate = process("strict", [START, sub("sub"), DONE],
                           [("start", "sub"), ("sub", "done")])
    w = World(compiled(no_alternate), compiled(CHILD))
    w.start("strict")
    control(w, HOLD)
    w.done("wash", instance="p1/sub/1")
    w.done("check", "fail", instance="p1/sub/1")
    d = w.log[-1][1]
    assert d.rejection and d.rejection.reason == RejectReason.NO_MATCHING_EDGE
    assert w.state().deferred == []


def test_two_kept_completions_apply_in_arrival_order():
    w = World(compiled(PAIR), compiled(CHILD))
    w.start("pair")
    control(w, HOLD)
    b, _ = end_child(w, "pass", "p1/b/1")
    a, _ = end_child(w, "pass", "p1/a/1")
    assert [k["event_id"] for k in w.state().deferred] == [b, a]
    d = control(w, RESUME, "r1")
    assert [(e.kind, e.step, e.source_event_id) for e in d.events] == [
        ("resumed", None, "r1"), ("step_completed", "b", b), ("step_entered", "join", b),
        ("step_completed", "a", a), ("step_completed", "join", a),
        ("step_entered", "done", a), ("completed", "done", a)]
    assert w.state().terminal_status == "completed" and d.requests == []


def test_a_kept_completion_that_ends_the_parent_drops_the_rest():
    w = World(compiled(PAIR), compiled(CHILD))
    w.start("pair")
    control(w, HOLD)
    end_child(w, "fail", "p1/a/1")
    end_child(w, "pass", "p1/b/1")
    d = control(w, RESUME)
    assert [(e.kind, e.step) for e in d.events][-1] == ("completed", "scrapped")
    assert [e.step for e in d.events if e.kind == "step_completed"] == ["a"]
    s = w.state()
    assert (s.terminal_status, s.deferred) == ("scrapped", [])
    assert d.requests == []  # b's child has ended: no cancel for it


def test_a_held_parent_with_a_kept_completion_does_not_migrate():
    w, _ = held_parent_with_ended_child()
    graph = w.graph_for(ControlInstance(instance_id="p1", action=RESUME))
    d = decide(graph, w.state(), ControlInstance(instance_id="p1", action=InstanceAction.MIGRATE,
                                                 to_version=1), "m1", T0, target=graph)
    assert d.rejection and d.rejection.reason == RejectReason.INVALID_TRANSITION
    assert "resume the instance first" in d.rejection.detail


def test_a_kept_completion_that_no_longer_applies_holds_the_instance_at_the_resume():
    w, eid = held_parent_with_ended_child()
    w.states["p1"].active = {}  # no router makes this state: a migrate waits for the resume
    d = control(w, RESUME)
    assert [e.kind for e in d.events] == ["resumed", "held"]
    assert eid in (d.events[1].reason or "")
    assert (w.state().status, w.state().deferred) == ("on_hold", [])


def test_kept_completions_round_trip_and_states_stored_before_them_still_load():
    w, _ = held_parent_with_ended_child()
    s = w.state()
    stored = json.loads(json.dumps(s.to_dict()))
    assert InstanceState.from_dict(stored) == s
    del stored["deferred"]
    assert InstanceState.from_dict(stored).deferred == []
