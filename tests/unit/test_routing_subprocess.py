"""Subprocess steps: a child instance per visit, whose end completes the parent's step."""

from __future__ import annotations

from typing import Any

from schemas.graph import ProcessGraph
from schemas.messages import (
    ControlInstance,
    InstanceAction,
    ParentRef,
    RejectReason,
    StartInstance,
    StepCompletion,
)
from services.definitions.validation import validate
from services.router.routing.commands import MAX_INSTANCE_ID, child_id
from tests.unit.flows import DONE, SCRAPPED, START, World, process, qa, task
from tests.unit.graphs import compiled

CHILD = process("clean", [START, task("wash"), qa("check"), DONE, SCRAPPED],
                [("start", "wash"), ("wash", "check"), ("check", "done"),
                 ("check", "scrapped", "alternate")])
CANCEL = InstanceAction.CANCEL


def sub(step_id: str, runs: str = "clean") -> dict[str, Any]:
    return {"id": step_id, "type": "subprocess", "subprocess": {"process": runs}}


# start -> split -> (right: clean, left: clean, check) -> join -> done; a failed check scraps.
TWINS = process("twins", [START, {"id": "split", "type": "parallel"},
                          {"id": "join", "type": "join"}, sub("right"), sub("left"),
                          qa("check"), DONE, SCRAPPED],
                [("start", "split"), ("split", "right"), ("split", "left"), ("split", "check"),
                 ("right", "join"), ("left", "join"), ("check", "join"),
                 ("check", "scrapped", "alternate"), ("join", "done")])


def parent(version: int | None = None, named: bool = False) -> dict[str, Any]:
    """start -> sub (runs `clean`) -> ship -> done; a failed child goes to `fix`."""
    edges: list[Any] = [("start", "sub"), ("sub", "ship"), ("ship", "done"),
                        ("sub", "fix", "alternate"), ("fix", "done")]
    if named:
        edges.append(("sub", "quarantine", None, "scrapped"))
    return process("reman", [
        START, {"id": "sub", "type": "subprocess",
                "subprocess": {"process": "clean", "version": version}},
        task("ship"), task("fix"), task("quarantine"), DONE], edges)


def test_entering_a_subprocess_step_starts_a_child_for_that_visit():
    w = World(compiled(parent(version=2)))
    d = w.start("reman", context={"line": 4}, priority="high", deliver=False)
    assert w.at() == ["sub"]
    (cmd,) = d.commands
    assert (cmd.command_id, cmd.step_type) == ("p1/sub/1", "subprocess")
    (start,) = d.requests
    assert isinstance(start, StartInstance)
    assert (start.instance_id, start.process, start.version) == ("p1/sub/1", "clean", 2)
    assert start.parent == ParentRef(instance_id="p1", step="sub", visit=1)
    assert start.context == {"line": 4} and start.priority == "high"
    assert start.subject.dump() == {"type": "part", "id": "SN1"}


def test_a_child_that_completes_completes_the_parent_step():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    child = w.state("p1/sub/1")
    assert child.parent == {"instance_id": "p1", "step": "sub", "visit": 1}
    w.done("wash", instance="p1/sub/1")
    d = w.done("check", "pass", instance="p1/sub/1")
    (back,) = d.requests
    assert isinstance(back, StepCompletion)
    assert (back.instance_id, back.step, back.visit, back.outcome) == ("p1", "sub", 1,
                                                                        "completed")
    assert w.state("p1/sub/1").status == "completed"
    assert w.at() == ["ship"]
    assert w.state().operators["sub"] == [None]


def test_the_child_terminal_status_routes_the_parent_by_name_else_alternate():
    for named, expect in ((True, "quarantine"), (False, "fix")):
        w = World(compiled(parent(named=named)), compiled(CHILD))
        w.start("reman")
        w.done("wash", instance="p1/sub/1")
        w.done("check", "fail", instance="p1/sub/1")
        assert w.state("p1/sub/1").terminal_status == "scrapped"
        assert w.at() == [expect]


def test_a_cancelled_child_completes_the_parent_step_as_cancelled():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    d = w.feed(ControlInstance(instance_id="p1/sub/1", action=InstanceAction.CANCEL))
    assert [r.outcome for r in d.requests] == ["cancelled"]  # type: ignore[union-attr]
    assert w.at() == ["fix"]


def test_a_child_that_cannot_start_tells_its_parent():
    w = World(compiled(parent()))  # no `clean` process anywhere
    w.start("reman")
    _, rejected = w.log[1]
    assert rejected.rejection and rejected.rejection.reason == RejectReason.UNKNOWN_PROCESS
    assert [r.outcome for r in rejected.requests] == ["not_started"]  # type: ignore[union-attr]
    assert w.at() == ["fix"]


def test_a_redelivered_child_start_is_a_no_op_and_never_reports_not_started():
    w = World(compiled(parent()), compiled(CHILD))
    d = w.start("reman", deliver=False)
    first = w.feed(d.requests[0], "start:p1/sub/1")
    assert first.state is not None
    assert w.feed(d.requests[0], "start:p1/sub/1").duplicate
    again = w.feed(d.requests[0], "other-id")
    assert again.rejection and again.rejection.reason == RejectReason.INSTANCE_EXISTS
    assert again.requests == []


def test_without_a_pinned_version_the_child_runs_the_latest_approved():
    w = World(compiled(parent()), compiled(CHILD, 1), compiled(CHILD, 2),
              compiled(CHILD, 3, status="deprecated"))
    d = w.start("reman", deliver=False)
    assert d.requests[0].version is None  # type: ignore[union-attr]
    w.feed(d.requests[0], "start:p1/sub/1")
    assert w.state("p1/sub/1").version == 2


def reworked() -> dict[str, Any]:
    """`parent()` whose failed child goes to a rework step that runs `sub` once more."""
    g = parent()
    g["steps"] = [*g["steps"], {"id": "rework", "type": "rework", "max_visits": 2}]
    g["edges"] = [e for e in g["edges"] if e["to"] != "fix"]
    g["edges"] += [{"from": "sub", "to": "rework", "type": "alternate"},
                   {"from": "rework", "to": "sub"},
                   {"from": "rework", "to": "fix", "type": "escalation"}]
    return g


def on_the_second_child() -> World:
    """p1's first child failed its check (the parent reworked), and `sub` started a second."""
    w = World(compiled(reworked()), compiled(CHILD))
    w.start("reman")
    w.done("wash", instance="p1/sub/1")
    w.done("check", "fail", instance="p1/sub/1")
    w.done("rework")
    return w


def test_a_second_visit_starts_a_second_child_and_the_old_one_is_stale():
    w = on_the_second_child()
    assert w.at() == ["sub"] and "p1/sub/2" in w.states
    stale = w.feed(StepCompletion(instance_id="p1", step="sub", visit=1, outcome="completed"))
    assert stale.rejection and stale.rejection.reason == RejectReason.STALE


def test_child_ids_stay_within_the_instance_id_limit():
    assert child_id("p1", "sub", 2) == "p1/sub/2"
    long = child_id("p" * 150, "s" * 80, 1)
    assert len(long) == MAX_INSTANCE_ID and long == child_id("p" * 150, "s" * 80, 1)
    assert long != child_id("p" * 150, "s" * 80, 2)


def test_a_subprocess_step_without_a_process_holds_and_fails_validation():
    g = parent()
    g["steps"][1] = {"id": "sub", "type": "subprocess"}
    w = World(compiled(g))
    w.start("reman")
    assert w.state().status == "on_hold" and "names no process" in w.state().hold_reason
    codes = {(f.code, f.step) for f in validate(ProcessGraph.model_validate(g))}
    assert ("subprocess.process_missing", "sub") in codes
    assert not [f for f in validate(ProcessGraph.model_validate(parent()))
                if f.code.startswith("subprocess")]


def test_the_parent_field_round_trips_on_the_wire():
    start = StartInstance.model_validate({
        "instance_id": "c", "process": "clean", "subject": {"type": "part", "id": "1"},
        "parent": {"instance_id": "p", "step": "sub", "visit": 1}})
    assert StartInstance.model_validate(start.dump()) == start
    assert "parent" not in StartInstance(instance_id="c", process="x",
                                         subject=start.subject).dump()


# --- an ended parent cancels its children -------------------------------------------------------


def cancels(d: Any) -> list[ControlInstance]:
    assert all(isinstance(r, ControlInstance) for r in d.requests)
    return list(d.requests)


def no_rejections(w: World) -> bool:
    return not [eid for eid, d in w.log if d.rejection]


def test_cancelling_a_parent_sends_one_cancel_to_each_child_it_waits_on():
    w = World(compiled(TWINS), compiled(CHILD))
    w.start("twins")
    assert w.at() == ["check", "left", "right"]
    d = w.feed(ControlInstance(instance_id="p1", action=CANCEL, reason="order withdrawn",
                               operator="alice"), "c1")
    assert [(r.instance_id, r.action, r.reason, r.operator, r.parent) for r in cancels(d)] == [
        ("p1/left/1", CANCEL, "parent p1 cancelled", "alice",
         ParentRef(instance_id="p1", step="left", visit=1)),
        ("p1/right/1", CANCEL, "parent p1 cancelled", "alice",
         ParentRef(instance_id="p1", step="right", visit=1))]
    assert [eid for eid, _ in w.log[-2:]] == ["c1/req/0", "c1/req/1"]
    for child in ("p1/left/1", "p1/right/1"):
        s = w.state(child)
        assert (s.status, s.terminal_status, s.active) == ("cancelled", "cancelled", {})
    assert no_rejections(w)
    assert w.feed(ControlInstance(instance_id="p1", action=CANCEL), "c1").duplicate


def test_a_child_cancelled_by_its_parent_does_not_report_back():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    w.feed(ControlInstance(instance_id="p1", action=CANCEL))
    eid, by_parent = w.log[-1]
    assert eid.endswith("/req/0") and by_parent.state is not None
    assert by_parent.state.instance_id == "p1/sub/1"
    assert by_parent.requests == []
    (cancelled,) = [e for e in by_parent.events if e.kind == "cancelled"]
    assert cancelled.reason == "parent p1 cancelled"
    assert w.state().status == "cancelled" and no_rejections(w)


def test_only_the_childs_own_parent_ref_keeps_it_from_reporting_back():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    other_visit = ParentRef(instance_id="p1", step="sub", visit=2)
    d = w.feed(ControlInstance(instance_id="p1/sub/1", action=CANCEL, parent=other_visit))
    assert [r.outcome for r in d.requests] == ["cancelled"]  # type: ignore[union-attr]
    assert w.at() == ["fix"]


def test_cancelling_a_parent_that_waits_on_no_child_cancels_nothing():
    prep_first = process("prep", [START, task("prep"), sub("sub"), DONE],
                         [("start", "prep"), ("prep", "sub"), ("sub", "done")])
    w = World(compiled(prep_first), compiled(CHILD))
    w.start("prep")
    d = w.feed(ControlInstance(instance_id="p1", action=CANCEL))
    assert d.requests == [] and w.state().status == "cancelled"
    assert list(w.states) == ["p1"]


def test_a_parent_past_its_subprocess_step_leaves_the_ended_child_alone():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    w.done("wash", instance="p1/sub/1")
    w.done("check", "pass", instance="p1/sub/1")
    assert w.at() == ["ship"]
    d = w.feed(ControlInstance(instance_id="p1", action=CANCEL))
    assert d.requests == []
    assert w.state("p1/sub/1").terminal_status == "completed"


def test_only_the_child_of_the_current_visit_is_cancelled():
    w = on_the_second_child()
    d = w.feed(ControlInstance(instance_id="p1", action=CANCEL))
    assert [r.instance_id for r in cancels(d)] == ["p1/sub/2"]
    assert w.state("p1/sub/1").terminal_status == "scrapped"
    assert w.state("p1/sub/2").terminal_status == "cancelled"


def test_a_cancel_cascades_from_parent_to_child_to_grandchild():
    middle = process("middle", [START, sub("inner"), DONE],
                     [("start", "inner"), ("inner", "done")])
    top = process("top", [START, sub("outer", runs="middle"), DONE],
                  [("start", "outer"), ("outer", "done")])
    w = World(compiled(top), compiled(middle), compiled(CHILD))
    w.start("top")
    assert w.at("p1/outer/1/inner/1") == ["wash"]
    w.feed(ControlInstance(instance_id="p1", action=CANCEL, operator="alice"), "c1")
    fed = [(eid, d.state.instance_id if d.state else None) for eid, d in w.log[-3:]]
    assert fed == [("c1", "p1"), ("c1/req/0", "p1/outer/1"),
                   ("c1/req/0/req/0", "p1/outer/1/inner/1")]
    (to_grandchild,) = cancels(w.log[-2][1])
    assert (to_grandchild.reason, to_grandchild.operator) == ("parent p1/outer/1 cancelled",
                                                              "alice")
    assert w.log[-1][1].requests == []
    assert {iid: s.status for iid, s in w.states.items()} == {
        "p1": "cancelled", "p1/outer/1": "cancelled", "p1/outer/1/inner/1": "cancelled"}
    assert no_rejections(w)


def test_a_cancelled_child_reports_up_and_cancels_its_own_children():
    middle = process("middle", [START, sub("inner"), DONE],
                     [("start", "inner"), ("inner", "done")])
    top = process("top", [START, sub("outer", runs="middle"), task("fix"), DONE],
                  [("start", "outer"), ("outer", "done"), ("outer", "fix", "alternate"),
                   ("fix", "done")])
    w = World(compiled(top), compiled(middle), compiled(CHILD))
    w.start("top")
    d = w.feed(ControlInstance(instance_id="p1/outer/1", action=CANCEL))
    assert [type(r).__name__ for r in d.requests] == ["StepCompletion", "ControlInstance"]
    assert w.at() == ["fix"]
    assert w.state("p1/outer/1/inner/1").status == "cancelled"
    assert no_rejections(w)


def test_a_branch_that_ends_the_parent_cancels_the_children_of_the_other_branches():
    w = World(compiled(TWINS), compiled(CHILD))
    w.start("twins")
    d = w.done("check", "fail")
    assert w.state().terminal_status == "scrapped"
    assert [(r.instance_id, r.reason, r.operator) for r in cancels(d)] == [
        ("p1/left/1", "parent p1 ended: scrapped", None),
        ("p1/right/1", "parent p1 ended: scrapped", None)]
    assert w.state("p1/left/1").status == w.state("p1/right/1").status == "cancelled"
    assert no_rejections(w)


def test_a_hold_leaves_the_child_running_and_a_cancel_while_held_still_reaches_it():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    held = w.feed(ControlInstance(instance_id="p1", action=InstanceAction.HOLD))
    assert held.requests == [] and w.state("p1/sub/1").status == "running"
    d = w.feed(ControlInstance(instance_id="p1", action=CANCEL))
    assert [r.instance_id for r in cancels(d)] == ["p1/sub/1"]
    assert w.state("p1/sub/1").status == "cancelled"


def test_a_parent_cancel_and_a_child_end_that_cross_are_both_rejected_as_not_running():
    w = World(compiled(parent()), compiled(CHILD))
    w.start("reman")
    w.done("wash", instance="p1/sub/1")
    ended = w.feed(StepCompletion(instance_id="p1/sub/1", step="check", outcome="pass"),
                   deliver=False)
    cancelled = w.feed(ControlInstance(instance_id="p1", action=CANCEL), deliver=False)
    for request in (*cancelled.requests, *ended.requests):
        late = w.feed(request)
        assert late.rejection and late.rejection.reason == RejectReason.INSTANCE_NOT_RUNNING
    assert w.state().status == "cancelled"
    assert w.state("p1/sub/1").terminal_status == "completed"
