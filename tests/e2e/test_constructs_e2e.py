"""Subprocess, parallel split/join, a timer and an expression decision on the real services.

A parent process prepares a part, hands it to a child process (a subprocess step), then
splits: one branch is an operator's task, the other a timer the tasks service fires; the join
waits for both, and a CEL expression on the reported measurement picks the end.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from services.devstack import Stack
from tests.conftest import wait_for
from tests.e2e.test_remanufacturing import at_step, dead_letters, finished, instance

CHILD = {
    "key": "overhaul", "name": "Overhaul", "steps": [
        {"id": "start", "type": "start"},
        {"id": "strip", "type": "task", "role": "technician"},
        {"id": "rebuilt", "type": "terminal", "terminal_status": "completed"},
        {"id": "scrapped", "type": "terminal", "terminal_status": "scrapped"}],
    "edges": [{"from": "start", "to": "strip"}, {"from": "strip", "to": "rebuilt"},
              {"from": "strip", "to": "scrapped", "type": "alternate"}]}

PARENT = {
    "key": "refurbish", "name": "Refurbish", "steps": [
        {"id": "start", "type": "start"},
        {"id": "prep", "type": "task", "role": "technician"},
        {"id": "overhaul", "type": "subprocess", "subprocess": {"process": "overhaul"}},
        {"id": "split", "type": "parallel"},
        {"id": "paint", "type": "task", "role": "painter"},
        {"id": "cure", "type": "timer", "timer": "PT1S"},
        {"id": "join", "type": "join"},
        {"id": "gauge", "type": "decision", "decision_type": "expression", "role": "qa"},
        {"id": "big", "type": "terminal", "terminal_status": "completed"},
        {"id": "small", "type": "terminal", "terminal_status": "returned"},
        {"id": "lost", "type": "terminal", "terminal_status": "scrapped"}],
    "edges": [
        {"from": "start", "to": "prep"}, {"from": "prep", "to": "overhaul"},
        {"from": "overhaul", "to": "split"},
        {"from": "overhaul", "to": "lost", "type": "alternate"},
        {"from": "split", "to": "paint"}, {"from": "split", "to": "cure"},
        {"from": "paint", "to": "join"}, {"from": "cure", "to": "join"},
        {"from": "join", "to": "gauge"},
        {"from": "gauge", "to": "big", "type": "condition",
         "condition": {"expression": "measurements.bore_mm >= 12.0"}},
        {"from": "gauge", "to": "small", "type": "condition",
         "condition": {"expression": "measurements.bore_mm < 12.0"}}]}

pytestmark = pytest.mark.usefixtures("installed")


@pytest.fixture(scope="module")
def installed(stack: Stack) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.gateway_port}",
                      timeout=30) as api:
        for graph in (CHILD, PARENT):
            created = api.post("/v1/processes", json=graph)
            assert created.status_code == 201, created.text
            approved = api.post(f"/v1/processes/{graph['key']}/approve")
            assert approved.status_code == 200, approved.text


def complete(api: httpx.Client, iid: str, step: str, **body: object) -> None:
    r = api.post(f"/v1/instances/{iid}/completions", json={"step": step, **body})
    assert r.status_code == 202, r.text


def refurbish_past_prep(api: httpx.Client) -> str:
    """A new `refurbish` instance whose `prep` step is done (it goes on to its subprocess)."""
    iid = f"R-{uuid.uuid4().hex[:6]}"
    r = api.post("/v1/instances", json={"process": "refurbish", "instance_id": iid,
                                        "subject": {"type": "part", "id": iid}})
    assert r.status_code == 202, r.text
    at_step(api, iid, "prep")
    complete(api, iid, "prep", visit=1)
    return iid


@pytest.mark.parametrize(("bore", "end"), [(12.4, "completed"), (11.2, "returned")])
def test_subprocess_split_timer_join_and_expression(api: httpx.Client, bore: float,
                                                    end: str) -> None:
    iid = refurbish_past_prep(api)
    at_step(api, iid, "overhaul")
    child = f"{iid}/overhaul/1"
    assert at_step(api, child, "strip")["process"]["key"] == "overhaul"
    complete(api, child, "strip", visit=1)
    assert finished(api, child)["terminal_status"] == "completed"
    # The child's end completed the parent's subprocess step; the split entered both branches,
    # and the timer fires by itself while the painter works.
    view = at_step(api, iid, "paint")
    assert view["visits"].get("cure") == 1
    complete(api, iid, "paint", visit=1)
    at_step(api, iid, "gauge", within=30)
    complete(api, iid, "gauge", visit=1, measurements={"bore_mm": bore})
    done = finished(api, iid)
    assert done["terminal_status"] == end
    journey = [v["step"] for v in done["journey"]]
    assert journey.index("cure") < journey.index("join") < journey.index("gauge")
    assert instance(api, child)["status"] == "completed"


def refurbish_waiting_on_its_child(api: httpx.Client) -> tuple[str, str]:
    """A `refurbish` instance past `prep`, and its `overhaul` child, waiting at `strip`."""
    iid = refurbish_past_prep(api)
    child = f"{iid}/overhaul/1"
    at_step(api, child, "strip")
    return iid, child


def test_a_scrapped_child_takes_the_parent_down_the_alternate_edge(api: httpx.Client) -> None:
    iid, child = refurbish_waiting_on_its_child(api)
    complete(api, child, "strip", visit=1, outcome="fail")
    assert finished(api, child)["terminal_status"] == "scrapped"
    assert finished(api, iid)["terminal_status"] == "scrapped"


def test_cancelling_the_parent_cancels_the_child_it_waits_on(api: httpx.Client) -> None:
    iid, child = refurbish_waiting_on_its_child(api)
    r = api.post(f"/v1/instances/{iid}/cancel",
                 json={"reason": "order withdrawn", "operator": "e2e"})
    assert r.status_code == 202, r.text
    view = wait_for(lambda: (v := instance(api, child)) and v["status"] == "cancelled" and v,
                    30, what=f"{child} cancelled")
    assert view["terminal_status"] == "cancelled"
    assert view["reason"] == f"parent {iid} cancelled"
    assert view["active_steps"] == []
    assert instance(api, iid)["status"] == "cancelled"
    open_tasks = api.get("/v1/tasks", params={"instance_id": child, "status": "open"})
    assert open_tasks.json()["items"] == []


def test_a_child_that_ends_while_its_parent_is_held_moves_the_parent_on_resume(
        api: httpx.Client, stack: Stack) -> None:
    iid, child = refurbish_waiting_on_its_child(api)
    r = api.post(f"/v1/instances/{iid}/hold", json={"reason": "line stop", "operator": "e2e"})
    assert r.status_code == 202, r.text
    wait_for(lambda: (v := instance(api, iid)) and v["status"] == "on_hold", 30,
             what=f"{iid} on hold")
    complete(api, child, "strip", visit=1)
    assert finished(api, child)["terminal_status"] == "completed"
    # The child's end sent the parent its completion; a completion for a task step, sent
    # after it on the same partition, is rejected, so its dead letter marks the point where
    # the held parent has taken the child's completion in: it must not be dead-lettered.
    complete(api, iid, "prep", visit=1, event_id=f"{iid}/marker")
    letters = dead_letters(stack.settings, 1, iid)
    assert [(d["key"], json.loads(d["value"])["step"], d["reason"]) for d in letters] == [
        (iid, "prep", "instance_not_running")]
    view = instance(api, iid)
    assert view and (view["status"], view["active_steps"]) == ("on_hold", ["overhaul"])
    r = api.post(f"/v1/instances/{iid}/resume", json={"operator": "e2e"})
    assert r.status_code == 202, r.text
    view = at_step(api, iid, "paint")
    assert view["status"] == "running"
    overhaul = [v for v in view["journey"] if v["step"] == "overhaul"]
    assert [(v["visit"], v["outcome"]) for v in overhaul] == [(1, "completed")]
