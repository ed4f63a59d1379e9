"""What a timer or automated step command asks the tasks service to do. Pure: no I/O.

Automated steps name an action (DESIGN §3); the service runs three kinds itself:

    {"type": "http", "method": "POST", "url": "https://erp/lots/${subject.id}",
     "headers": {...}, "body": {...}, "timeout_s": 10, "max_attempts": 5,
     "outcome_field": "result.status"}
    {"type": "webhook", "url": "https://hooks.example/flowline"}   # POSTs the step as JSON
    {"type": "handler", "name": "detect_outliers", "params": {...}}  # run by `flowline worker`
    {"handler": "detect_outliers", "params": {...}}                  # the same, template style

Any other action (or none) leaves the step in the inbox for a person or a machine to complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.durations import parse_duration
from schemas.messages import StepCommand
from services.tasks.templating import TemplateError, render, render_url, variables
from services.tasks.timeutil import parse_time

HTTP, WEBHOOK, HANDLER, TIMER = "http", "webhook", "handler", "timer"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Statuses worth another attempt: the server may recover (or asked us to come back later).
RETRYABLE_STATUS = frozenset({408, 425, 429})


class InvalidAction(ValueError):
    """The step's action cannot be run as written: permanent, retrying will not fix it."""


@dataclass(frozen=True)
class Action:
    kind: str  # http | webhook | handler
    spec: dict[str, Any] = field(default_factory=dict)
    handler: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None


def parse_action(action: dict[str, Any] | None) -> Action | None:
    """The action this service runs for `action`, or None when it runs none (an inbox task);
    InvalidAction when it is one of ours but malformed."""
    if not action:
        return None
    kind = action.get("type")
    if kind is None and "handler" in action:
        kind = HANDLER
    if kind not in (HTTP, WEBHOOK, HANDLER):
        return None
    max_attempts = _positive(action, "max_attempts", int)
    timeout = _positive(action, "timeout_s", float)
    if kind == HANDLER:
        name = action.get("name") or action.get("handler")
        if not isinstance(name, str) or not name.strip():
            raise InvalidAction("a handler action needs the handler's `name`")
        if not isinstance(action.get("params", {}), dict):
            raise InvalidAction("a handler action's `params` must be an object")
        return Action(HANDLER, dict(action), name.strip(), max_attempts, timeout)
    url = action.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidAction(f"an {kind} action needs a `url`")
    method = str(action.get("method", "POST")).upper()
    if kind == HTTP and method not in METHODS:
        raise InvalidAction(f"method {method!r} is not one of {', '.join(sorted(METHODS))}")
    headers = action.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise InvalidAction("`headers` must be an object of strings")
    return Action(kind, dict(action), None, max_attempts, timeout)


def _positive(action: dict[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    value = action.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidAction(f"`{key}` must be a positive number, not {value!r}")
    return kind(value)


def executor(cmd: StepCommand) -> str | None:
    """Who does a command's work when it is not a person: timer, http, webhook or handler."""
    if cmd.step_type == TIMER:
        return TIMER
    if cmd.step_type != "automated":
        return None
    try:
        action = parse_action(cmd.action)
    except InvalidAction:
        kind = (cmd.action or {}).get("type") or HANDLER
        return str(kind)  # ours, but broken: the job records the incident
    return action.kind if action else None


def wake_at(cmd: StepCommand) -> datetime:
    """When a timer step wakes: the router's `wake_at` when it says, else entered + duration.

    Raises ValueError when neither is there or valid.
    """
    # A field of newer commands; older routers' commands may carry it as an extra.
    said = getattr(cmd, "wake_at", None) or (cmd.model_extra or {}).get("wake_at")
    if said:
        at = parse_time(str(said))
        assert at is not None
        return at
    if not cmd.timer:
        raise ValueError(f"timer step {cmd.step} has no duration")
    entered = parse_time(cmd.entered_at)
    assert entered is not None
    return entered + parse_duration(cmd.timer)


def job_input(cmd: StepCommand, action: Action | None) -> dict[str, Any]:
    """What a job's runner gets: the step, its instance's subject and context, the params."""
    return {
        "command_id": cmd.command_id,
        "instance_id": cmd.instance_id,
        "tenant": cmd.tenant,
        "process": cmd.process.dump(),
        "step": cmd.step,
        "step_name": cmd.step_name,
        "visit": cmd.visit,
        "subject": cmd.subject.dump() if cmd.subject else None,
        "work_order": cmd.work_order,
        "context": dict(cmd.context),
        "params": dict((action.spec.get("params") if action else None) or {}),
    }


def backoff_delay(failed_attempts: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait after `failed_attempts` failures: base * 2**n, at most `cap`
    (2, 4, 8, ... 60 s with the defaults, as seed 003 retries)."""
    if failed_attempts <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failed_attempts, 32)))


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str]
    json_body: Any
    timeout: float


def http_call(action: Action, job_in: dict[str, Any], default_timeout: float) -> HttpCall:
    """The request an http or webhook action makes for a job; InvalidAction when a template
    names something the step does not have."""
    names = variables(job_in)
    spec = action.spec
    try:
        url = render_url(str(spec["url"]), names)
        headers = {str(k): str(render(v, names)) for k, v in (spec.get("headers") or {}).items()}
        if action.kind == WEBHOOK:
            method, body = "POST", {k: job_in.get(k) for k in (
                "command_id", "instance_id", "tenant", "process", "step", "step_name", "visit",
                "subject", "work_order", "context")}
        else:
            method, body = str(spec.get("method", "POST")).upper(), render(spec.get("body"), names)
    except TemplateError as exc:
        raise InvalidAction(str(exc)) from exc
    # Receivers can dedupe our retries: the same step visit always sends the same key.
    headers.setdefault("Idempotency-Key", str(job_in.get("command_id", "")))
    return HttpCall(method, url, headers, body, action.timeout or default_timeout)


def retryable_status(status: int) -> bool:
    """A failed HTTP status worth retrying: 5xx, timeouts and rate limits; other 4xx are ours
    to fix (a wrong URL or body), so retrying would only repeat them."""
    return status >= 500 or status in RETRYABLE_STATUS


def result_of(action: Action, status: int, payload: Any) -> tuple[str, dict[str, Any]]:
    """(outcome, measurements) of a successful response. The outcome is `pass` unless the
    action names a response field holding it (`outcome_field`, dotted)."""
    measurements: dict[str, Any] = {"status_code": status}
    if isinstance(payload, dict):
        measurements.update(payload)
    elif payload is not None:
        measurements["response"] = payload
    field_path = action.spec.get("outcome_field")
    if not field_path:
        return "pass", measurements
    value: Any = payload
    for part in str(field_path).split("."):
        if not isinstance(value, dict) or part not in value:
            raise InvalidAction(f"the response has no {field_path!r} to take the outcome from")
        value = value[part]
    return str(value), measurements
