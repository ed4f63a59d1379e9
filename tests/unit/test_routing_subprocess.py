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


def test_a_second_visit_starts_a_second_child_and_the_old_one_is_stale():
    g = parent()
    g["steps"] = [*g["steps"], {"id": "rework", "type": "rework", "max_visits": 2}]
    g["edges"] = [e for e in g["edges"] if e["to"] != "fix"]
    g["edges"] += [{"from": "sub", "to": "rework", "type": "alternate"},
                   {"from": "rework", "to": "sub"},
                   {"from": "rework", "to": "fix", "type": "escalation"}]
    w = World(compiled(g), compiled(CHILD))
    w.start("reman")
    w.done("wash", instance="p1/sub/1")
    w.done("check", "fail", instance="p1/sub/1")
    w.done("rework")
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
