"""The routing core, step by step, on the remanufacturing process (DESIGN.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    RejectReason,
    StartInstance,
    StepCompletion,
    Subject,
)
from services.router.routing import Decision, InstanceState, decide
from services.router.routing.decide import resolve_version
from tests.unit.graphs import compiled, gauged, reman

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
G = compiled(reman())


class Driver:
    """Feeds messages through `decide` the way the router does, keeping the state."""

    def __init__(self, graph=G):
        self.graph = graph
        self.state: InstanceState | None = None
        self.n = 0
        self.decisions: list[Decision] = []

    def feed(self, message, event_id: str | None = None) -> Decision:
        self.n += 1
        d = decide(self.graph, self.state, message, event_id or f"e{self.n}",
                   T0 + timedelta(seconds=self.n))
        if d.state is not None:
            self.state = d.state
        self.decisions.append(d)
        return d

    def start(self, **kw) -> Decision:
        return self.feed(StartInstance(instance_id="p1", process="reman",
                                       subject=Subject(type="part", id="SN1"), **kw))

    def done(self, step: str, outcome: str | None = None, **kw) -> Decision:
        return self.feed(StepCompletion(instance_id="p1", step=step, outcome=outcome, **kw),
                         kw.pop("event_id", None))

    @property
    def at(self) -> list[str]:
        assert self.state is not None
        return sorted(self.state.active)


def walk_to_inspect(d: Driver) -> None:
    d.start()
    for step in ("receive", "disassemble", "clean"):
        d.done(step)


def test_start_passes_through_start_and_waits_at_the_first_task():
    d = Driver()
    dec = d.start()
    assert d.at == ["receive"]
    assert [c.command_id for c in dec.commands] == ["p1/receive/1"]
    assert [e.kind for e in dec.events] == ["started", "step_entered", "step_completed",
                                            "step_entered"]
    assert d.state and d.state.visits == {"start": 1, "receive": 1}


def test_a_part_that_passes_everything_ships():
    d = Driver()
    walk_to_inspect(d)
    d.done("inspect", "pass")
    d.done("reassemble")
    d.done("final_qa", "PASS")
    last = d.done("ship", operator="ann")
    assert d.state and d.state.status == "completed" and d.state.terminal_status == "completed"
    assert last.events[-1].kind == "completed" and last.events[-1].terminal_status == "completed"
    assert d.state.active == {}


def test_four_inspection_failures_escalate_to_the_scrap_decision_after_three_reworks():
    d = Driver()
    walk_to_inspect(d)
    for attempt in range(1, 4):
        d.done("inspect", "fail")
        assert d.at == ["rework"] and d.state and d.state.visits["rework"] == attempt
        d.done("rework", operator=f"tech{attempt}")
    dec = d.done("inspect", "fail")
    assert d.at == ["scrap_decision"]
    assert d.state and d.state.visits["rework"] == 3
    kinds = [e.kind for e in dec.events]
    assert "escalated" in kinds
    escalated = next(e for e in dec.events if e.kind == "escalated")
    assert (escalated.step, escalated.to_step) == ("rework", "scrap_decision")
    assert dec.commands[0].reason == "escalated"
    d.done("scrap_decision", "scrap")
    assert d.state.terminal_status == "scrapped"


def test_scrap_decision_can_return_to_supplier():
    d = Driver(compiled(reman(max_rework=1)))
    walk_to_inspect(d)
    d.done("inspect", "fail")
    d.done("rework")
    d.done("inspect", "fail")
    d.done("scrap_decision", "Return")  # named outcomes match case-insensitively
    assert d.state and d.state.terminal_status == "returned"


def test_final_qa_rework_loop_is_bounded_separately():
    d = Driver()
    walk_to_inspect(d)
    d.done("inspect", "pass")
    d.done("reassemble")
    for _ in range(2):
        d.done("final_qa", "fail")
        d.done("rework_final")
    d.done("final_qa", "fail")
    assert d.at == ["scrap_decision"] and d.state and d.state.visits["rework_final"] == 2


def test_revisit_commands_carry_the_visit_table_and_previous_operators():
    d = Driver()
    walk_to_inspect(d)
    d.done("inspect", "fail")
    d.done("rework", operator="bob")
    dec = d.done("inspect", "fail")
    cmd = dec.commands[0]
    assert (cmd.step, cmd.visit, cmd.command_id) == ("rework", 2, "p1/rework/2")
    assert cmd.visits["rework"] == 2 and cmd.visits["inspect"] == 2
    assert cmd.previous_operators == ["bob"] and cmd.revisit_assignment == "different"


def test_a_role_revisit_goes_to_the_revisit_role():
    g = reman()
    rework = next(s for s in g["steps"] if s["id"] == "rework")
    rework.update(revisit_assignment="role", revisit_role="senior_technician")
    d = Driver(compiled(g, 1))
    walk_to_inspect(d)
    first = d.done("inspect", "fail").commands[0]
    d.done("rework", operator="bob")
    second = d.done("inspect", "fail").commands[0]
    assert (first.step, first.visit, first.role) == ("rework", 1, "technician")
    assert (second.step, second.visit, second.role) == ("rework", 2, "senior_technician")
    assert second.revisit_assignment == "role" and second.previous_operators == ["bob"]


def test_duplicate_event_id_changes_nothing():
    d = Driver()
    walk_to_inspect(d)
    d.done("inspect", "fail", event_id="same")
    before = d.state.to_dict() if d.state else None
    dup = d.feed(StepCompletion(instance_id="p1", step="inspect", outcome="fail"), "same")
    assert dup.duplicate and dup.state is None and not dup.commands and not dup.events
    assert d.state and d.state.to_dict() == before


def test_stale_completion_is_rejected_and_the_instance_stays():
    d = Driver()
    walk_to_inspect(d)
    before = d.state.to_dict() if d.state else None
    dec = d.done("receive")
    assert dec.rejection and dec.rejection.reason == RejectReason.STALE
    assert "inspect" in dec.rejection.detail
    assert d.state and d.state.to_dict() == before
    assert [e.kind for e in dec.events] == ["rejected"]


def test_completion_for_the_wrong_visit_is_stale():
    d = Driver()
    walk_to_inspect(d)
    dec = d.done("inspect", "pass", visit=2)
    assert dec.rejection and dec.rejection.reason == RejectReason.STALE


def test_unknown_instance_is_rejected():
    dec = decide(G, None, StepCompletion(instance_id="nope", step="x"), "e1", T0)
    assert dec.rejection and dec.rejection.reason == RejectReason.UNKNOWN_INSTANCE


def test_outcome_without_edge_is_rejected_and_lists_what_is_accepted():
    d = Driver()
    walk_to_inspect(d)
    dec = d.done("inspect", "maybe")
    assert dec.rejection and dec.rejection.reason == RejectReason.NO_MATCHING_EDGE
    assert "pass, fail" in dec.rejection.detail
    assert d.at == ["inspect"]
    # the rejected event id was not remembered: a corrected retry with it still applies
    again = d.feed(StepCompletion(instance_id="p1", step="inspect", outcome="pass"),
                   f"e{d.n}")
    assert again.rejection is None and d.at == ["reassemble"]


def test_hold_blocks_completions_until_resumed_and_cancel_ends():
    d = Driver()
    d.start()
    d.feed(ControlInstance(instance_id="p1", action=InstanceAction.HOLD, reason="audit"))
    assert d.state and d.state.status == "on_hold"
    dec = d.done("receive")
    assert dec.rejection and dec.rejection.reason == RejectReason.INSTANCE_NOT_RUNNING
    d.feed(ControlInstance(instance_id="p1", action=InstanceAction.RESUME))
    d.done("receive")
    assert d.at == ["disassemble"]
    d.feed(ControlInstance(instance_id="p1", action=InstanceAction.CANCEL))
    assert d.state.status == "cancelled" and d.state.active == {}
    dec = d.feed(ControlInstance(instance_id="p1", action=InstanceAction.RESUME))
    assert dec.rejection and dec.rejection.reason == RejectReason.INVALID_TRANSITION


def test_starting_twice_is_rejected_and_paused_versions_start_nothing():
    d = Driver()
    d.start()
    assert d.start().rejection.reason == RejectReason.INSTANCE_EXISTS  # type: ignore[union-attr]
    paused = Driver(compiled(reman(), status="paused"))
    dec = paused.start()
    assert dec.rejection and dec.rejection.reason == RejectReason.PROCESS_NOT_ACTIVE
    dec = decide(None, None, StartInstance(instance_id="x", process="nope",
                                           subject=Subject(type="t", id="1")), "e", T0)
    assert dec.rejection and dec.rejection.reason == RejectReason.UNKNOWN_PROCESS


def test_resolve_version_pins_latest_approved_unless_named():
    v1, v2, v3 = (compiled(reman(), n, s).version
                  for n, s in ((1, "approved"), (2, "approved"), (3, "deprecated")))
    versions = {1: v1, 2: v2, 3: v3}
    assert resolve_version(versions, None) is v2
    assert resolve_version(versions, 1) is v1
    assert resolve_version(versions, 9) is None


def test_missing_escalation_edge_holds_with_a_reason():
    g = reman()
    g["edges"] = [e for e in g["edges"] if e.get("type") != "escalation"]
    d = Driver(compiled(g, 1))
    walk_to_inspect(d)
    for _ in range(3):
        d.done("inspect", "fail")
        d.done("rework")
    dec = d.done("inspect", "fail")
    assert d.state and d.state.status == "on_hold"
    assert "no escalation edge" in (d.state.hold_reason or "")
    assert dec.events[-1].kind == "held"


def test_measurement_decision_routes_by_threshold_and_holds_when_missing():
    g = gauged(tolerance=0.01, scrap_above=10.11)
    for value, unit, expect in ((10.105, "mm", "completed"), (10.2, "mm", "scrapped")):
        d = Driver(compiled(g))
        d.feed(StartInstance(instance_id="p1", process="m", subject=Subject(type="p", id="1")))
        d.done("gauge", measurements={"bore": {"value": value, "unit": unit}})
        assert d.state and d.state.terminal_status == expect
    d = Driver(compiled(g))
    d.feed(StartInstance(instance_id="p1", process="m", subject=Subject(type="p", id="1")))
    d.done("gauge", measurements={"bore": {"value": 10.0, "unit": "in"}})
    assert d.state and d.state.status == "on_hold" and "expects mm" in (d.state.hold_reason or "")


def test_due_time_is_sla_times_weight():
    g = reman()
    g["slas"] = {"urgent": "PT4H", "medium": "48:00:00"}
    g["steps"][1]["weight"] = 0.25
    d = Driver(compiled(g))
    dec = d.start(priority="urgent")
    assert dec.commands[0].due_at == (T0 + timedelta(seconds=1, hours=1)).isoformat()


@pytest.mark.parametrize("outcome", ["pass", "fail"])
def test_same_inputs_same_decision(outcome):
    a, b = Driver(), Driver()
    for d in (a, b):
        walk_to_inspect(d)
    assert a.done("inspect", outcome) == b.done("inspect", outcome)


def test_state_round_trips_through_its_dict():
    d = Driver()
    walk_to_inspect(d)
    assert d.state is not None
    assert InstanceState.from_dict(d.state.to_dict()) == d.state


def test_an_older_record_is_decided_at_the_instance_last_change_not_back_in_time() -> None:
    """Records come from several producers (a timer's fired completion carries its due time):
    one older than the instance's last change must not make its journey run backwards."""
    d = Driver()
    d.start()
    late = T0 + timedelta(seconds=1)
    assert d.state is not None and d.state.updated_at == late.isoformat()
    early = decide(G, d.state, StepCompletion(instance_id="p1", step="receive"), "older",
                   T0 - timedelta(hours=1))
    assert early.state is not None and early.state.updated_at == late.isoformat()
    entered = [e for e in early.events if e.kind.value == "step_entered"]
    assert [e.at for e in entered] == [late.isoformat()]
    assert [c.entered_at for c in early.commands] == [late.isoformat()]
    on_time = decide(G, d.state, StepCompletion(instance_id="p1", step="receive"), "newer",
                     late + timedelta(seconds=5))
    assert on_time.state is not None
    assert on_time.state.updated_at == (late + timedelta(seconds=5)).isoformat()


@pytest.mark.parametrize("extra", [{"lot": "L7"}, {"tags": ["rush", "oem"]}])
def test_commands_and_events_carry_the_whole_subject_extra_fields_too(extra):
    d = Driver()
    d.feed(StartInstance(instance_id="p1", process="reman",
                         subject=Subject(type="part", id="SN1", **extra)))
    dec = d.done("receive")
    subjects = [c.subject.dump() for c in dec.commands] + [e.subject.dump() for e in dec.events]
    assert subjects and all(s == {"type": "part", "id": "SN1", **extra} for s in subjects)
    other = Driver()
    other.feed(StartInstance(instance_id="p1", process="reman",
                             subject=Subject(type="part", id="SN2", **extra)))
    assert [c.subject.id for c in other.done("receive").commands] == ["SN2"]
