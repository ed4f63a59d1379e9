"""Subprocess, parallel split/join, a timer and an expression decision on the real services.

A parent process prepares a part, hands it to a child process (a subprocess step), then
splits: one branch is an operator's task, the other a timer the tasks service fires; the join
waits for both, and a CEL expression on the reported measurement picks the end.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.devstack import Stack
from tests.e2e.test_remanufacturing import at_step, finished, instance

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


@pytest.mark.parametrize(("bore", "end"), [(12.4, "completed"), (11.2, "returned")])
def test_subprocess_split_timer_join_and_expression(api: httpx.Client, bore: float,
                                                    end: str) -> None:
    iid = f"R-{uuid.uuid4().hex[:6]}"
    r = api.post("/v1/instances", json={"process": "refurbish", "instance_id": iid,
                                        "subject": {"type": "part", "id": iid}})
    assert r.status_code == 202, r.text
    at_step(api, iid, "prep")
    complete(api, iid, "prep", visit=1)
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


def test_a_scrapped_child_takes_the_parent_down_the_alternate_edge(api: httpx.Client) -> None:
    iid = f"R-{uuid.uuid4().hex[:6]}"
    api.post("/v1/instances", json={"process": "refurbish", "instance_id": iid,
                                    "subject": {"type": "part", "id": iid}})
    at_step(api, iid, "prep")
    complete(api, iid, "prep", visit=1)
    child = f"{iid}/overhaul/1"
    at_step(api, child, "strip")
    complete(api, child, "strip", visit=1, outcome="fail")
    assert finished(api, child)["terminal_status"] == "scrapped"
    assert finished(api, iid)["terminal_status"] == "scrapped"
