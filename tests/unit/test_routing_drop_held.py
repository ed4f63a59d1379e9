"""`resume` with `drop_held`: the way out of a routing hold that a retry can never clear.

Two branches of a split reaching a step that is already active hold the instance; a plain
resume retries the held token, meets the same active step and holds again, forever. With
`drop_held` the token is dropped, its branch closed, and the join still waits for every other
branch (decide.py `_Run._resume_dropping`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.messages import ControlInstance, InstanceAction, RejectReason
from services.router.routing import decide
from tests.unit.flows import DONE, START, World, process, task
from tests.unit.graphs import compiled
from tests.unit.test_routing_hold_resume import T1, held_at_max_visits

SPLIT = {"id": "split", "type": "parallel"}
JOIN = {"id": "join", "type": "join"}
SHARED = ("two branches reached c, which is already active: parallel branches cannot share a "
          "step; resume with drop_held to go on with the active c, or migrate or cancel the "
          "instance")


def shared(direct: tuple[str, ...] = ("d",)) -> dict[str, Any]:
    """split -> a, b, *direct; a -> c, b -> c (the shared step); c and `direct` -> join."""
    branches = ("a", "b", *direct)
    return process("share", [START, SPLIT, JOIN, *(task(s) for s in (*branches, "c", "after")),
                             DONE],
                   [("start", "split"), *(("split", b) for b in branches), ("a", "c"),
                    ("b", "c"), ("c", "join"), *((b, "join") for b in direct),
                    ("join", "after"), ("after", "done")])


def resume(w: World, **kw: Any):
    return w.feed(ControlInstance(instance_id="p1", action=InstanceAction.RESUME, **kw))


def held_at_shared_step() -> World:
    w = World(compiled(shared()))
    w.start("share")
    w.done("a")
    w.done("b")
    s = w.state()
    assert s.status == "on_hold" and s.hold_reason == SHARED
    assert s.pending == [{"step": "c", "reason": "completed", "leave": False,
                          "lane": {"split": "split/1", "branch": "b"}}]
    return w


def test_the_hold_reason_names_the_way_out():
    assert "resume with drop_held" in SHARED and "migrate or cancel" in SHARED
    held_at_shared_step()


def test_a_plain_resume_holds_again_every_time():
    w = held_at_shared_step()
    for _ in range(3):
        d = resume(w)
        assert d.rejection is None and d.commands == []
        assert [(e.kind, e.reason) for e in d.events] == [("resumed", None), ("held", SHARED)]
        assert w.state().status == "on_hold" and len(w.state().pending) == 1


def test_resume_with_drop_held_goes_on_with_the_active_step_and_the_join_waits_for_all():
    w = held_at_shared_step()
    d = resume(w, drop_held=True, reason="b's inspection is covered by a's", operator="op-1")
    assert d.rejection is None and d.commands == []
    (resumed,) = d.events
    assert resumed.kind == "resumed" and resumed.dropped == ["c"]
    assert resumed.reason == ("b's inspection is covered by a's; dropped held c (branch b of "
                              "split/1 closed)")
    s = w.state()
    assert s.status == "running" and s.pending == [] and s.hold_reason is None
    assert w.at() == ["c", "d"] and s.splits["split/1"]["ended"] == ["b"]
    assert resumed.parallel is not None and resumed.parallel.splits["split/1"]["ended"] == ["b"]

    first = w.done("c")
    assert w.at() == ["d"], "the join must not fire while branch d is under way"
    assert ("step_completed", "join") not in [(e.kind, e.step) for e in first.events]
    last = w.done("d")
    assert w.at() == ["after"] and [c.command_id for c in last.commands] == ["p1/after/1"]
    assert [e.step for e in last.events if e.kind == "step_completed"] == ["d", "join"]
    assert last.events[-1].parallel is not None
    assert last.events[-1].parallel.dump() == {"lanes": {}, "splits": {}}
    w.done("after")
    assert w.state().status == "completed" and w.state().terminal_status == "completed"


def test_without_a_reason_the_resumed_reason_is_the_drop_alone():
    w = held_at_shared_step()
    (resumed,) = resume(w, drop_held=True).events
    assert resumed.reason == "dropped held c (branch b of split/1 closed)"


def test_when_the_dropped_branch_was_the_last_one_out_the_join_fires_on_c():
    w = World(compiled(shared(direct=())))
    w.start("share")
    w.done("a")
    w.done("b")
    resume(w, drop_held=True)
    assert w.at() == ["c"]
    d = w.done("c")
    assert w.at() == ["after"] and ("step_completed", "join") in [(e.kind, e.step)
                                                                  for e in d.events]


def test_drop_held_that_would_leave_nothing_to_wait_on_is_refused():
    d = held_at_max_visits()  # rework held at max_visits; nothing else is active
    before = d.state
    out = d.feed(ControlInstance(instance_id="p1", action=InstanceAction.RESUME,
                                 drop_held=True))
    assert out.state is None and out.commands == []
    assert out.rejection is not None and out.rejection.reason == RejectReason.INVALID_TRANSITION
    assert "waiting on no step" in out.rejection.detail
    assert "migrate" in out.rejection.detail and "cancel" in out.rejection.detail
    assert d.state is before and d.state is not None and d.state.status == "on_hold"


def test_drop_held_on_an_instance_without_held_steps_is_a_plain_resume():
    w = World(compiled(shared()))
    w.start("share")
    w.feed(ControlInstance(instance_id="p1", action=InstanceAction.HOLD))
    d = resume(w, drop_held=True)
    assert [(e.kind, e.dropped) for e in d.events] == [("resumed", None)]
    assert w.state().status == "running" and w.at() == ["a", "b", "d"]


def test_the_drop_is_deterministic():
    w = held_at_shared_step()
    g, state = w.graph_for(ControlInstance(instance_id="p1", action=InstanceAction.RESUME)), \
        w.state()
    msg = ControlInstance(instance_id="p1", action=InstanceAction.RESUME, drop_held=True)
    assert decide(g, state, msg, "r1", T1) == decide(g, state, msg, "r1", T1)


def test_drop_held_is_left_off_the_wire_unless_set():
    plain = ControlInstance(instance_id="p1", action=InstanceAction.RESUME)
    assert "drop_held" not in plain.dump()
    assert ControlInstance(instance_id="p1", action=InstanceAction.RESUME,
                           drop_held=True).dump()["drop_held"] is True
    assert ControlInstance.model_validate({"instance_id": "p1", "action": "resume"}) == plain


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3), st.lists(st.integers(0, 9), min_size=12, max_size=12))
def test_after_a_drop_the_join_never_fires_early_and_the_instance_ends(direct, picks):
    """Any number of direct branches, completed in any order; each hold is resumed with
    drop_held. The join fires once, only when no branch step is active, and the run ends."""
    names = tuple(f"x{i}" for i in range(direct))
    branch_steps = {"a", "b", "c", *names}
    w = World(compiled(shared(direct=names)))
    w.start("share")
    fired = 0
    for n in range(40):
        s = w.state()
        if s.status == "completed":
            break
        if s.status == "on_hold":
            d = resume(w, drop_held=True)
        else:
            d = w.done(w.at()[(picks[n % len(picks)]) % len(w.at())])
        assert d.rejection is None, d.rejection
        for ev in d.events:
            if ev.kind == "step_completed" and ev.step == "join":
                fired += 1
                assert not branch_steps & set(w.state().active), "the join fired early"
    assert w.state().status == "completed" and fired == 1
