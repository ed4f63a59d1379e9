"""Parallel splits and joins in the routing core (routing/parallel.py, DESIGN §4)."""

from __future__ import annotations

from typing import Any

from schemas.messages import ControlInstance, InstanceAction, RejectReason
from services.router.routing import InstanceState, parallel
from tests.unit.flows import DONE, SCRAPPED, START, World, process, qa, task
from tests.unit.graphs import compiled
from tests.unit.test_routing_migration import migrated, par

SPLIT = {"id": "split", "type": "parallel"}
JOIN = {"id": "join", "type": "join"}


def split_join(*extra_steps: dict[str, Any], branches: tuple[str, ...] = ("a", "b"),
               edges: tuple[Any, ...] = ()) -> dict[str, Any]:
    """start -> split -> branches -> join -> after -> done (plus `extra_steps` and `edges`)."""
    steps = [START, SPLIT, JOIN, task("after"), DONE, SCRAPPED,
             *(task(b) for b in branches), *extra_steps]
    return process("par", steps, [("start", "split"), *(("split", b) for b in branches),
                                  *(e for e in edges),
                                  *((b, "join") for b in branches if b not in _sources(edges)),
                                  ("join", "after"), ("after", "done")])


def _sources(edges: tuple[Any, ...]) -> set[str]:
    return {e[0] for e in edges if len(e) < 3 or not e[2]}


def kinds(decision: Any) -> list[tuple[str, str | None]]:
    return [(e.kind.value, e.step) for e in decision.events]


def test_a_split_enters_every_branch_and_counts_one_visit():
    w = World(compiled(split_join()))
    d = w.start("par")
    assert w.at() == ["a", "b"]
    assert [c.command_id for c in d.commands] == ["p1/a/1", "p1/b/1"]
    assert ("step_entered", "split") in kinds(d) and ("step_completed", "split") in kinds(d)
    s = w.state()
    assert s.visits["split"] == 1
    assert s.lanes == {"a": {"split": "split/1", "branch": "a"},
                       "b": {"split": "split/1", "branch": "b"}}
    assert s.splits["split/1"]["branches"] == ["a", "b"]


def test_the_join_waits_for_every_branch_then_continues_once():
    w = World(compiled(split_join()))
    w.start("par")
    first = w.done("a")
    assert w.at() == ["b"], "the join must not fire on the first arrival"
    assert not first.commands
    assert ("step_entered", "join") in kinds(first)
    assert w.state().splits["split/1"]["arrived"] == ["a"]
    last = w.done("b")
    assert w.at() == ["after"]
    assert [c.command_id for c in last.commands] == ["p1/after/1"]
    assert last.commands[0].reason == "joined"
    assert ("step_completed", "join") in kinds(last)
    s = w.state()
    assert s.visits["join"] == 1 and s.splits == {} and s.lanes == {}
    w.done("after")
    assert w.state().status == "completed" and w.state().terminal_status == "completed"


def test_a_join_of_three_waits_for_the_third_in_any_order():
    w = World(compiled(split_join(branches=("a", "b", "c"))))
    w.start("par")
    w.done("c")
    w.done("a")
    assert w.at() == ["b"]
    w.done("b")
    assert w.at() == ["after"]


def test_a_branch_counts_once_even_if_it_arrives_twice():
    s = InstanceState("i", "default", "par", 1, {"type": "t", "id": "1"})
    a, _b = parallel.open_split(s, "split", 1, ["a", "b"], None)
    parallel.start_gathering(s, a, "join", 1)
    assert parallel.arrive(s, a) is None
    assert parallel.arrive(s, a) is None, "b has not arrived"
    assert s.splits["split/1"]["arrived"] == ["a"]


def test_a_rework_loop_inside_a_branch_still_joins_once():
    g = split_join(qa("inspect_a"), {"id": "rework_a", "type": "rework", "max_visits": 2},
                   {"id": "scrap_a", "type": "decision", "decision_type": "manual"},
                   edges=(("a", "inspect_a"), ("inspect_a", "join"),
                          ("inspect_a", "rework_a", "alternate"), ("rework_a", "inspect_a"),
                          ("rework_a", "scrap_a", "escalation"),
                          ("scrap_a", "scrapped", None, "scrap"),
                          ("scrap_a", "join", None, "accept")))
    w = World(compiled(g))
    w.start("par")
    w.done("b")
    w.done("a")
    for _ in range(2):
        w.done("inspect_a", "fail")
        assert w.state().lanes["rework_a"] == {"split": "split/1", "branch": "a"}
        w.done("rework_a")
    w.done("inspect_a", "fail")  # rework_a is exhausted: escalates, still on branch a
    assert w.at() == ["scrap_a"] and w.state().lanes["scrap_a"]["branch"] == "a"
    d = w.done("scrap_a", "accept")
    assert w.at() == ["after"] and w.state().visits["join"] == 1
    assert [c.step for c in d.commands] == ["after"]


def test_a_rework_loop_around_the_split_starts_a_fresh_join():
    g = split_join(qa("final"), {"id": "rework", "type": "rework", "max_visits": 2},
                   edges=(("after", "final"), ("final", "done"),
                          ("final", "rework", "alternate"), ("rework", "split"),
                          ("rework", "scrapped", "escalation")))
    g["edges"] = [e for e in g["edges"] if (e["from"], e["to"]) != ("after", "done")]
    w = World(compiled(g))
    w.start("par")
    w.done("a")
    w.done("b")
    w.done("after")
    w.done("final", "fail")
    d = w.done("rework")
    assert w.at() == ["a", "b"]
    assert [c.command_id for c in d.commands] == ["p1/a/2", "p1/b/2"]
    assert list(w.state().splits) == ["split/2"]
    w.done("a")
    assert w.at() == ["b"], "the second visit of the split waits for its own branches"
    w.done("b")
    assert w.at() == ["after"] and w.state().visits["join"] == 2
    w.done("after")
    w.done("final", "pass")
    assert w.state().terminal_status == "completed"


def test_scrapped_in_one_branch_ends_the_instance_and_clears_the_others():
    g = split_join(qa("inspect_a"), edges=(("a", "inspect_a"), ("inspect_a", "join"),
                                           ("inspect_a", "scrapped", "alternate")))
    w = World(compiled(g))
    w.start("par")
    w.done("a")
    d = w.done("inspect_a", "fail")
    s = w.state()
    assert s.status == "completed" and s.terminal_status == "scrapped"
    assert s.active == {} and s.lanes == {} and s.splits == {}
    assert d.events[-1].kind == "completed" and d.events[-1].terminal_status == "scrapped"
    late = w.done("b")
    assert late.rejection and late.rejection.reason == RejectReason.INSTANCE_NOT_RUNNING


def test_a_branch_may_end_on_its_own_at_a_completed_terminal():
    # the shape validation accepts (tests/unit/test_validation_parallel.py: graph(3, 2))
    g = split_join(branches=("a", "b", "c"), edges=(("c", "done"),))
    for order in (("c", "a", "b"), ("a", "b", "c")):
        w = World(compiled(g))
        w.start("par")
        for step in order:
            assert w.state().status == "running"
            w.done(step)
        assert w.at() == ["after"], f"order {order}"
        assert w.state().status == "running" and w.state().visits["join"] == 1
        w.done("after")
        assert w.state().terminal_status == "completed"


def test_the_instance_completes_when_its_last_branch_ends():
    g = process("ends", [START, SPLIT, task("a"), task("b"), DONE],
                [("start", "split"), ("split", "a"), ("split", "b"), ("a", "done"),
                 ("b", "done")])
    w = World(compiled(g))
    w.start("ends")
    d = w.done("b")
    assert w.state().status == "running" and w.at() == ["a"]
    assert "completed" not in [e.kind for e in d.events]
    d = w.done("a")
    assert w.state().status == "completed" and w.state().terminal_status == "completed"
    assert [e.kind for e in d.events].count("completed") == 1


def test_nested_splits_join_inside_out():
    g = process("nest", [START, SPLIT, JOIN, {"id": "inner", "type": "parallel"},
                         {"id": "inner_join", "type": "join"}, task("x"), task("y"), task("z"),
                         task("after"), DONE],
                [("start", "split"), ("split", "x"), ("split", "inner"), ("inner", "y"),
                 ("inner", "z"), ("y", "inner_join"), ("z", "inner_join"),
                 ("inner_join", "join"), ("x", "join"), ("join", "after"), ("after", "done")])
    w = World(compiled(g))
    w.start("nest")
    assert w.at() == ["x", "y", "z"]
    assert w.state().lanes["y"] == {"split": "inner/1", "branch": "y"}
    assert w.state().splits["inner/1"]["outer"] == {"split": "split/1", "branch": "inner"}
    w.done("y")
    w.done("x")
    assert w.at() == ["z"]
    d = w.done("z")
    assert w.at() == ["after"]
    completed = [e.step for e in d.events if e.kind == "step_completed"]
    assert completed == ["z", "inner_join", "join"]


def test_branches_that_gather_at_two_joins_hold_the_instance():
    g = process("two", [START, SPLIT, JOIN, {"id": "join2", "type": "join"}, task("a"),
                        task("b"), DONE],
                [("start", "split"), ("split", "a"), ("split", "b"), ("a", "join"),
                 ("b", "join2"), ("join", "done"), ("join2", "done")])
    w = World(compiled(g))
    w.start("two")
    w.done("a")
    w.done("b")
    s = w.state()
    assert s.status == "on_hold" and "gather at two joins" in (s.hold_reason or "")


def test_a_branch_looping_back_into_its_own_split_holds():
    g = split_join(qa("inspect_a"), edges=(("a", "inspect_a"), ("inspect_a", "join"),
                                           ("inspect_a", "split", "alternate")))
    w = World(compiled(g))
    w.start("par")
    w.done("a")
    w.done("inspect_a", "fail")
    s = w.state()
    assert s.status == "on_hold" and "loops back into split" in (s.hold_reason or "")
    assert s.visits["split"] == 1


def test_two_branches_cannot_share_a_step():
    g = process("share", [START, SPLIT, JOIN, task("a"), task("b"), task("c"), DONE],
                [("start", "split"), ("split", "a"), ("split", "b"), ("a", "c"), ("b", "c"),
                 ("c", "join"), ("join", "done")])
    w = World(compiled(g))
    w.start("share")
    w.done("a")
    w.done("b")
    assert w.state().status == "on_hold"
    assert "already active" in (w.state().hold_reason or "")


def test_a_join_outside_any_split_holds():
    g = process("nosplit", [START, JOIN, DONE], [("start", "join"), ("join", "done")])
    w = World(compiled(g))
    w.start("nosplit")
    assert w.state().status == "on_hold"
    assert "outside any parallel split" in (w.state().hold_reason or "")


def test_cancel_clears_every_branch():
    w = World(compiled(split_join()))
    w.start("par")
    w.done("a")
    w.feed(ControlInstance(instance_id="p1", action=InstanceAction.CANCEL))
    s = w.state()
    assert s.status == "cancelled" and s.active == {} and s.lanes == {} and s.splits == {}


def test_parallel_state_round_trips_and_old_states_still_load():
    w = World(compiled(split_join()))
    w.start("par")
    w.done("a")
    s = w.state()
    assert InstanceState.from_dict(s.to_dict()) == s
    old = {k: v for k, v in s.to_dict().items() if k not in ("lanes", "splits", "parent")}
    loaded = InstanceState.from_dict(old)
    assert loaded.lanes == {} and loaded.splits == {} and loaded.parent is None


def test_decide_does_not_mutate_the_state_it_is_given():
    w = World(compiled(split_join()))
    w.start("par")
    given = w.state()
    snapshot = given.to_dict()
    w.done("a")
    assert w.state() is not given
    assert given.to_dict() == snapshot and given.splits["split/1"]["arrived"] == []


# --- the parallel state on instance events (for the journey read model) -----------------------


def test_the_last_event_of_each_decision_inside_a_block_carries_the_parallel_state():
    w = World(compiled(split_join()))
    started = w.start("par")
    assert [e.parallel is not None for e in started.events] == [
        False] * (len(started.events) - 1) + [True]
    snapshot = started.events[-1].parallel
    assert snapshot is not None
    assert snapshot.lanes == {"a": {"split": "split/1", "branch": "a"},
                              "b": {"split": "split/1", "branch": "b"}}
    assert snapshot.splits["split/1"]["branches"] == ["a", "b"]
    arrived = w.done("a").events[-1].parallel
    assert arrived is not None and arrived.splits["split/1"]["arrived"] == ["a"]
    assert list(arrived.lanes) == ["b"]
    left = w.done("b")  # the join fires: the instance leaves its last block
    assert left.events[-1].parallel is not None
    assert left.events[-1].parallel.dump() == {"lanes": {}, "splits": {}}
    after = w.done("after")  # outside any block, it costs nothing again
    assert all(e.parallel is None for e in after.events)


def test_instances_that_never_split_carry_no_parallel_state():
    w = World(compiled(process("plain", [START, task("a"), DONE],
                               [("start", "a"), ("a", "done")])))
    events = [*w.start("plain").events, *w.done("a").events]
    assert all(e.parallel is None and "parallel" not in e.dump() for e in events)


def test_cancel_and_migrate_inside_a_block_carry_the_new_parallel_state():
    w = World(compiled(par()))
    w.start("par")
    out = migrated(w, compiled(par(b="b2"), version=2), {"b": "b2"})
    (event,) = out.events
    assert event.kind == "migrated" and event.parallel is not None
    assert set(event.parallel.lanes) == {"a", "b2"}
    assert event.parallel.splits["split/1"]["branches"] == ["a", "b2"]
    cancelled = w.feed(ControlInstance(instance_id="p1", action=InstanceAction.CANCEL))
    assert cancelled.events[-1].parallel is not None
    assert cancelled.events[-1].parallel.dump() == {"lanes": {}, "splits": {}}
