"""Wire examples: one valid `data` per CloudEvents type, and DESIGN.md §4's example graph.

Written as integrators would write them (plain JSON, optional fields mostly left out), so a
test that validates them against the generated schemas checks the schemas, not pydantic.
"""

from __future__ import annotations

from typing import Any

from schemas import topics

# DESIGN.md §4, completed with what a valid graph needs: a pass path from `inspect` to a
# `completed` terminal, and named "Release"/"return" ways out of the manual `scrap_decision`.
# `x_designer` and `x_lane` are fields the model does not know: they must survive a round trip.
DESIGN_GRAPH: dict[str, Any] = {
    "key": "reman", "name": "Remanufacturing", "x_designer": {"zoom": 1.5}, "steps": [
        {"id": "start", "type": "start"},
        {"id": "inspect", "type": "decision", "decision_type": "qa_result", "role": "inspector",
         "x_lane": "quality"},
        {"id": "rework", "type": "rework", "max_visits": 3, "revisit_assignment": "different"},
        {"id": "scrap_decision", "type": "decision", "decision_type": "manual"},
        {"id": "scrapped", "type": "terminal", "terminal_status": "scrapped"},
        {"id": "ship", "type": "task", "role": "shipping"},
        {"id": "shipped", "type": "terminal", "terminal_status": "completed"},
        {"id": "returned", "type": "terminal", "terminal_status": "returned"}],
    "edges": [
        {"from": "start", "to": "inspect"},
        {"from": "inspect", "to": "rework", "type": "alternate"},
        {"from": "rework", "to": "inspect"},
        {"from": "rework", "to": "scrap_decision", "type": "escalation"},
        {"from": "scrap_decision", "to": "scrapped", "name": "scrap"},
        {"from": "inspect", "to": "ship", "x_lane": "pass"},
        {"from": "ship", "to": "shipped"},
        {"from": "scrap_decision", "to": "ship", "name": "Release"},
        {"from": "scrap_decision", "to": "returned", "name": "return"}]}

_PROCESS = {"key": "reman", "version": 3}
_SUBJECT = {"type": "part", "id": "SN-1001"}
_AT = "2025-03-01T08:00:00+00:00"


def _instance_event(kind: str) -> dict[str, Any]:
    return {"kind": kind, "instance_id": "i-1", "process": _PROCESS, "at": _AT, "step": "inspect",
            "visit": 1, "source_event_id": "e-1"}


def _control(action: str) -> dict[str, Any]:
    return {"instance_id": "i-1", "action": action, "reason": "line stop", "operator": "op-7"}


SAMPLES: dict[str, dict[str, Any]] = {
    topics.DEFINITION_V1: {**DESIGN_GRAPH, "tenant": "default", "version": 3,
                           "status": "approved", "approved_at": _AT},
    topics.START_V1: {"instance_id": "i-1", "process": "reman", "subject": _SUBJECT,
                      "work_order": "WO-9", "priority": "high", "context": {"line": 2}},
    topics.CANCEL_V1: _control("cancel"),
    topics.HOLD_V1: _control("hold"),
    topics.RESUME_V1: {**_control("resume"), "drop_held": True},
    topics.MIGRATE_V1: {**_control("migrate"), "to_version": 2,
                        "step_map": {"receive": "intake"}},
    topics.COMPLETED_V1: {"instance_id": "i-1", "step": "inspect", "visit": 1, "outcome": "fail",
                          "measurements": {"bore_mm": 12.04}, "equipment": "cmm-2"},
    topics.COMMAND_V1: {
        "command_id": "i-1/rework/1", "instance_id": "i-1", "tenant": "default",
        "process": _PROCESS, "step": "rework", "step_type": "rework", "visit": 1,
        "visits": {"start": 1, "inspect": 1, "rework": 1}, "revisit_assignment": "different",
        "previous_operators": [], "reason": "fail", "entered_at": _AT, "subject": _SUBJECT},
    topics.TASK_EVENT_V1: {"kind": "claimed", "task_id": "t-1", "instance_id": "i-1",
                           "step": "inspect", "visit": 1, "operator": "op-7", "at": _AT},
    topics.DEAD_LETTER_V1: {
        "reason": "stale", "detail": "i-1 is not in step 'pack'", "consumer": "router",
        "topic": "flowline.step-completions", "partition": 3, "offset": 42, "key": "i-1",
        "headers": {"ce_id": "e-9", "ce_type": topics.COMPLETED_V1},
        "value": '{"instance_id": "i-1", "step": "pack"}', "value_encoding": "utf-8",
        "at": _AT},
    **{t: _instance_event(t.split(".")[2]) for t in topics.INSTANCE_EVENTS.types},
}
# The optional fields of a resume with `drop_held` and of an instance inside a parallel block.
SAMPLES[topics.instance_event_type("resumed")] = {
    **_instance_event("resumed"), "dropped": ["inspect"],
    "reason": "line stop; dropped held inspect (branch b of split/1 closed)"}
SAMPLES[topics.instance_event_type("step_entered")] = {
    **_instance_event("step_entered"), "parallel": {
        "lanes": {"inspect": {"split": "split/1", "branch": "inspect"}},
        "splits": {"split/1": {"step": "split", "branches": ["inspect", "label"],
                               "arrived": ["label"], "ended": [], "join": "join",
                               "join_visit": 1, "outer": None}}}}
