"""Migrating a running instance to another version (`migrate` control, schemas.migration)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.messages import ControlInstance, InstanceAction, InstanceEventKind, RejectReason
from services.router.routing import decide
from tests.unit.graphs import compiled, reman
from tests.unit.test_routing import Driver, walk_to_inspect

T1 = datetime(2026, 1, 2, 8, 0, tzinfo=UTC)


def renamed(graph: dict, old: str, new: str) -> dict:
    def fix(s: str) -> str:
        return new if s == old else s
    return {**graph, "steps": [{**s, "id": fix(s["id"])} for s in graph["steps"]],
            "edges": [{**e, "from": fix(e["from"]), "to": fix(e["to"])} for e in graph["edges"]]}


def migrate(to: int, **kw) -> ControlInstance:
    return ControlInstance(instance_id="p1", action=InstanceAction.MIGRATE, to_version=to, **kw)


def test_migrates_and_routes_on_the_new_version() -> None:
    d = Driver()
    walk_to_inspect(d)
    d.done("inspect", "fail")
    d.done("rework")  # back at inspect, visit 2
    v2 = compiled(reman(max_rework=5), version=2)
    out = decide(d.graph, d.state, migrate(2, reason="ECO-17"), "m1", T1, v2)
    assert out.rejection is None and out.state is not None
    assert (out.state.version, out.state.active) == (2, {"inspect": 2})
    assert out.state.visits["rework"] == 1 and out.commands == []
    [event] = out.events
    assert (event.kind, event.from_version, event.process.version) == (
        InstanceEventKind.MIGRATED, 1, 2)
    assert event.active_steps == ["inspect"] and event.reason == "ECO-17"
    # The next failures count against the new limit: 5 reworks, not 3.
    d.graph, d.state = v2, out.state
    for _ in range(4):
        d.done("inspect", "fail")
        d.done("rework")
    assert d.state.visits["rework"] == 5 and d.at == ["inspect"]
    d.done("inspect", "fail")
    assert d.at == ["scrap_decision"]


def test_a_renamed_active_step_gets_a_command_under_its_new_id() -> None:
    d = Driver()
    walk_to_inspect(d)
    v2 = compiled(renamed(reman(), "inspect", "visual_inspect"), version=2)
    refused = decide(d.graph, d.state, migrate(2), "m1", T1, v2)
    assert refused.state is None and refused.rejection is not None
    assert refused.rejection.reason == RejectReason.INVALID_TRANSITION
    assert "'inspect' is not in v2" in refused.rejection.detail
    out = decide(d.graph, d.state, migrate(2, step_map={"inspect": "visual_inspect"}), "m2",
                 T1, v2)
    assert out.state is not None and out.state.active == {"visual_inspect": 1}
    [cmd] = out.commands
    assert (cmd.command_id, cmd.reason, cmd.process.version) == (
        "p1/visual_inspect/1", "migrated", 2)


def test_unknown_target_finished_instances_and_duplicates() -> None:
    d = Driver()
    walk_to_inspect(d)
    unknown = decide(d.graph, d.state, migrate(9), "m1", T1, None)
    assert unknown.rejection is not None
    assert unknown.rejection.reason == RejectReason.UNKNOWN_PROCESS
    v2 = compiled(reman(), version=2)
    paused = compiled(reman(), version=3, status="paused")
    refused = decide(d.graph, d.state, migrate(3), "m2", T1, paused)
    assert refused.rejection is not None and "v3 is paused" in refused.rejection.detail
    ok = decide(d.graph, d.state, migrate(2), "m3", T1, v2)
    assert ok.state is not None
    again = decide(v2, ok.state, migrate(2), "m3", T1, v2)
    assert again.duplicate
    d.feed(ControlInstance(instance_id="p1", action=InstanceAction.CANCEL))
    done = decide(d.graph, d.state, migrate(2), "m4", T1, v2)
    assert done.rejection is not None
    assert done.rejection.reason == RejectReason.INSTANCE_NOT_RUNNING
