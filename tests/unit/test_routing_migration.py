"""Migrating a running instance to another version (`migrate` control, schemas.migration)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.messages import ControlInstance, InstanceAction, InstanceEventKind, RejectReason
from services.router.routing import Decision, Graph, decide
from tests.unit.flows import DONE, START, World, process, task
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


# --- inside a parallel block --------------------------------------------------------------------

def par(*, b: str = "b", join: str = "join", split_type: str = "parallel",
        extra: bool = False) -> dict:
    """start -> split -> (a, b) -> join -> after -> done; `extra` adds an unrelated step."""
    steps = [START, DONE, {"id": "split", "type": split_type}, {"id": join, "type": "join"},
             task("a"), task(b), task("after"), *([task("label")] if extra else [])]
    edges = [("start", "split"), ("split", "a"), ("split", b), ("a", join), (b, join),
             (join, "after"), ("after", "done"), *([("label", "done")] if extra else [])]
    return process("par", steps, edges)


def migrated(w: World, target: Graph, step_map: dict[str, str] | None = None) -> Decision:
    """Migrate p1 to `target`; on success `w` routes it on the new version from then on."""
    state = w.state()
    out = decide(w.graphs["par"][state.version], state,
                 migrate(target.version.version, step_map=step_map), f"m{w.n}", T1, target)
    if out.state is not None:
        w.graphs["par"][target.version.version] = target
        w.states["p1"] = out.state
    return out


def test_two_active_branches_migrate_with_a_renamed_branch_and_join_once() -> None:
    w = World(compiled(par()))
    w.start("par")
    assert w.at() == ["a", "b"]
    out = migrated(w, compiled(par(b="b2", extra=True), version=2), {"b": "b2"})
    assert out.rejection is None and out.state is not None
    s = out.state
    assert (s.version, s.active) == (2, {"a": 1, "b2": 1})
    assert s.lanes == {"a": {"split": "split/1", "branch": "a"},
                       "b2": {"split": "split/1", "branch": "b2"}}
    assert s.splits["split/1"]["step"] == "split"
    assert s.splits["split/1"]["branches"] == ["a", "b2"]
    assert [c.command_id for c in out.commands] == ["p1/b2/1"]
    w.done("a")
    assert w.at() == ["b2"]
    last = w.done("b2")
    fired = [e for _, d in w.log for e in d.events
             if e.kind == InstanceEventKind.STEP_COMPLETED and e.step == "join"]
    assert len(fired) == 1 and fired[0] in last.events
    assert w.at() == ["after"] and w.state().visits["join"] == 1
    assert w.state().splits == {} and w.state().lanes == {}
    w.done("after")
    assert w.state().status == "completed"


def test_a_branch_waiting_at_a_renamed_join_fires_it_under_its_new_id() -> None:
    w = World(compiled(par()))
    w.start("par")
    w.done("a")  # a waits at the join
    out = migrated(w, compiled(par(join="merge"), version=2), {"join": "merge"})
    assert out.state is not None
    assert out.state.splits["split/1"]["join"] == "merge"
    assert out.state.visits["merge"] == 1
    w.done("b")
    assert w.at() == ["after"] and w.state().splits == {}


def test_a_block_that_does_not_map_is_refused_with_what_does_not() -> None:
    w = World(compiled(par()))
    w.start("par")
    for target, detail in [
        (par(split_type="task"), "split 'split' is a task step in v2, not a parallel split"),
        (par(join="merge"), "split 'split' joins at join in v1 but at merge in v2"),
    ]:
        out = migrated(w, compiled(target, version=2))
        assert out.state is None and out.rejection is not None
        assert out.rejection.reason == RejectReason.INVALID_TRANSITION
        assert detail in out.rejection.detail
    removed = migrated(w, compiled(process("par", [START, DONE, {"id": "split",
                                                                 "type": "parallel"},
                                                   {"id": "join", "type": "join"}, task("a"),
                                                   task("after")],
                                           [("start", "split"), ("split", "a"), ("a", "join"),
                                            ("join", "after"), ("after", "done")]), version=2))
    assert removed.rejection is not None
    assert "split 'split' has branches {a, b} in v1 but {a} in v2" in removed.rejection.detail
    assert w.state().version == 1 and w.at() == ["a", "b"]
