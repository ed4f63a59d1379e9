"""Timer and automated steps: what their commands say, and how they resume."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.messages import RejectReason
from tests.unit.flows import DONE, START, World, process
from tests.unit.graphs import compiled


def cure(duration: str | None = "PT30M") -> World:
    g = process("cure", [START, {"id": "paint", "type": "automated",
                                 "action": {"handler": "paint", "params": {"coats": 2}}},
                         {"id": "wait", "type": "timer", "timer": duration}, DONE],
                [("start", "paint"), ("paint", "wait"), ("wait", "done")])
    w = World(compiled(g))
    w.start("cure")
    return w


def test_automated_steps_carry_their_action():
    w = cure()
    (cmd,) = w.log[0][1].commands
    assert cmd.step_type == "automated" and cmd.action == {"handler": "paint",
                                                           "params": {"coats": 2}}
    assert cmd.wake_at is None


def test_a_timer_command_says_when_to_wake_and_an_ordinary_completion_resumes_it():
    w = cure()
    (cmd,) = w.done("paint").commands
    assert (cmd.step_type, cmd.timer) == ("timer", "PT30M")
    entered = datetime.fromisoformat(cmd.entered_at)
    assert datetime.fromisoformat(cmd.wake_at or "") == entered + timedelta(minutes=30)
    early = w.done("wait", visit=2)
    assert early.rejection and early.rejection.reason == RejectReason.STALE
    w.done("wait", visit=1, equipment="timer")
    assert w.state().status == "completed"


def test_a_timer_without_a_valid_duration_holds_rather_than_guessing():
    for duration in ("soon", None):
        w = cure(duration)
        w.done("paint")
        s = w.state()
        assert s.status == "on_hold" and "timer step wait" in (s.hold_reason or "")
        assert "wait" not in s.visits
