"""Automated step actions, templating, backoff and timer wake times: the pure parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.messages import ProcessRef, StepCommand, Subject
from services.tasks.actions import (
    HANDLER,
    HTTP,
    TIMER,
    WEBHOOK,
    InvalidAction,
    backoff_delay,
    executor,
    http_call,
    job_input,
    parse_action,
    result_of,
    retryable_status,
    wake_at,
)
from services.tasks.templating import TemplateError, render, render_url, variables

ENTERED = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)


def command(**fields: Any) -> StepCommand:
    base: dict[str, Any] = {
        "command_id": "i-1/call/2", "instance_id": "i-1", "tenant": "default",
        "process": ProcessRef(key="p", version=3), "step": "call", "step_type": "automated",
        "visit": 2, "visits": {"call": 2}, "reason": "pass", "entered_at": ENTERED.isoformat(),
        "subject": Subject(type="part", id="SN 7/A"), "context": {"lot": "L7",
                                                                  "limits": {"max": 5}},
    }
    return StepCommand(**{**base, **fields})


def test_actions_the_service_runs_and_those_it_leaves_to_the_inbox() -> None:
    assert parse_action(None) is None
    assert parse_action({"type": "email", "to": "x"}) is None  # not ours: an inbox task
    http = parse_action({"type": "http", "url": "http://x/", "method": "put", "timeout_s": 2,
                         "max_attempts": 4})
    assert http is not None and (http.kind, http.timeout, http.max_attempts) == (HTTP, 2.0, 4)
    hook = parse_action({"type": "webhook", "url": "http://x/"})
    assert hook is not None and hook.kind == WEBHOOK
    # Both handler shapes: the brief's and the templates'.
    for spec in ({"type": "handler", "name": "verdict"}, {"handler": "verdict", "params": {}}):
        action = parse_action(spec)
        assert action is not None and (action.kind, action.handler) == (HANDLER, "verdict")


@pytest.mark.parametrize("spec", [
    {"type": "http"},
    {"type": "http", "url": "http://x/", "method": "BREW"},
    {"type": "http", "url": "http://x/", "timeout_s": 0},
    {"type": "http", "url": "http://x/", "max_attempts": True},
    {"type": "http", "url": "http://x/", "headers": {"X": 1}},
    {"type": "handler"},
    {"handler": "x", "params": [1]},
])
def test_malformed_actions_are_permanent_errors(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidAction):
        parse_action(spec)


def test_executor_of_a_command() -> None:
    assert executor(command(step_type="task")) is None
    assert executor(command(step_type="timer", timer="PT1M")) == TIMER
    assert executor(command(action={"type": "http", "url": "http://x"})) == HTTP
    assert executor(command(action={"handler": "verdict"})) == HANDLER
    assert executor(command(action={"type": "http"})) == HTTP  # broken, still ours: an incident
    assert executor(command(action=None)) is None  # an automated step someone else completes


def test_templates_name_values_and_nothing_else() -> None:
    names = variables(job_input(command(), None))
    assert names["subject.id"] == "SN 7/A" and names["context.limits.max"] == 5
    assert names["visit"] == 2 and names["process.key"] == "p"
    assert render("lot ${context.lot}, visit $visit", names) == "lot L7, visit 2"
    # A string that is one placeholder keeps the value's type (an object stays an object).
    assert render({"limits": "${context.limits}", "n": ["$visit"]}, names) == {
        "limits": {"max": 5}, "n": [2]}
    assert render("costs $$5", names) == "costs $5"
    with pytest.raises(TemplateError, match=r"\$context.missing"):
        render("${context.missing}", names)
    with pytest.raises(TemplateError, match="not a valid template"):
        render("${subject.id", names)
    with pytest.raises(TemplateError):
        render("${__class__}", names)  # no attribute access: it is just an unknown name
    # URL values are percent-encoded: a value cannot add path segments or query parameters.
    assert render_url("http://h/parts/${subject.id}?lot=${context.lot}", names) == \
        "http://h/parts/SN%207%2FA?lot=L7"


def test_http_call_is_built_from_the_action_and_the_step() -> None:
    cmd = command()
    action = parse_action({"type": "http", "method": "POST", "url": "http://h/${subject.type}",
                           "headers": {"X-Lot": "${context.lot}"},
                           "body": {"serial": "${subject.id}"}})
    assert action is not None
    call = http_call(action, job_input(cmd, action), default_timeout=7)
    assert (call.method, call.url, call.timeout) == ("POST", "http://h/part", 7)
    assert call.headers == {"X-Lot": "L7", "Idempotency-Key": "i-1/call/2"}
    assert call.json_body == {"serial": "SN 7/A"}
    hook = parse_action({"type": "webhook", "url": "http://h/hook", "timeout_s": 3})
    assert hook is not None
    hook_call = http_call(hook, job_input(cmd, hook), default_timeout=7)
    assert (hook_call.method, hook_call.timeout) == ("POST", 3)
    assert hook_call.json_body["instance_id"] == "i-1"
    assert hook_call.json_body["context"] == {"lot": "L7", "limits": {"max": 5}}
    bad = parse_action({"type": "http", "url": "http://h/${context.nope}"})
    assert bad is not None
    with pytest.raises(InvalidAction, match="nope"):
        http_call(bad, job_input(cmd, bad), default_timeout=7)


def test_backoff_doubles_from_two_seconds_and_stops_at_sixty() -> None:
    assert [backoff_delay(n) for n in range(0, 8)] == [0, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(1000) == 60
    assert [backoff_delay(n, base=0.05, cap=60) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]


def test_which_failures_are_worth_retrying() -> None:
    assert all(retryable_status(s) for s in (500, 502, 503, 504, 408, 429))
    assert not any(retryable_status(s) for s in (400, 401, 403, 404, 409, 422))


def test_the_outcome_of_a_response() -> None:
    plain = parse_action({"type": "http", "url": "http://h"})
    assert plain is not None
    assert result_of(plain, 200, {"ok": True}) == ("pass", {"status_code": 200, "ok": True})
    assert result_of(plain, 204, None) == ("pass", {"status_code": 204})
    assert result_of(plain, 200, [1]) == ("pass", {"status_code": 200, "response": [1]})
    graded = parse_action({"type": "http", "url": "http://h", "outcome_field": "result.grade"})
    assert graded is not None
    assert result_of(graded, 200, {"result": {"grade": "A"}})[0] == "A"
    with pytest.raises(InvalidAction, match="result.grade"):
        result_of(graded, 200, {"result": {}})


def test_a_timer_wakes_when_the_router_says_or_after_its_duration() -> None:
    assert wake_at(command(step_type="timer", timer="PT90S")) == ENTERED + timedelta(seconds=90)
    said = (ENTERED + timedelta(hours=1)).isoformat()
    assert wake_at(command(step_type="timer", timer="PT90S", wake_at=said)) == \
        ENTERED + timedelta(hours=1)
    with pytest.raises(ValueError, match="no duration"):
        wake_at(command(step_type="timer"))
    with pytest.raises(ValueError, match="not a duration"):
        wake_at(command(step_type="timer", timer="soon"))
