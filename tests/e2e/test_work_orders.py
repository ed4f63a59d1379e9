"""Work-order batches end to end: start a lot, advance it with one request, retry safely."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from services.devstack import Stack
from tests.e2e.test_remanufacturing import PROCESS, at_step, instance


@pytest.fixture()
def api(stack: Stack) -> Iterator[httpx.Client]:
    """A longer timeout than conftest's: a batch answer waits for the read model."""
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.gateway_port}",
                      timeout=60) as client:
        yield client


def test_start_and_advance_a_work_order_in_batches(api: httpx.Client) -> None:
    wo = f"WO-{uuid.uuid4().hex[:6]}"
    serials = [f"SN-{n}" for n in range(5)]
    path = f"/v1/work-orders/{wo}/instances"
    started = api.post(path, json={"batch_id": "b-start", "action": "start", "process": PROCESS,
                                   "subjects": [{"type": "part", "id": s} for s in serials]})
    assert started.status_code == 200, started.text
    assert started.json()["counts"] == {"started": 5}
    ids = [r["instance_id"] for r in started.json()["results"]]
    assert ids == [f"{wo}/{s}" for s in serials]
    for iid in ids:
        at_step(api, iid, "receive")

    # One part is moved on by hand first: the batch must reject it, not complete it twice.
    early = ids[0]
    r = api.post(f"/v1/instances/{early}/completions", json={"step": "receive", "visit": 1})
    assert r.status_code == 202
    at_step(api, early, "disassemble")

    body = {"batch_id": "b-receive", "action": "advance", "step": "receive",
            "operator": "cell-4"}
    advanced = api.post(path, json=body).json()
    assert advanced["counts"] == {"advanced": 4, "rejected": 1}, advanced
    rejected = [r for r in advanced["results"] if r["result"] == "rejected"]
    assert rejected == [{"instance_id": early, "result": "rejected",
                         "reason": "stale: at disassemble, not receive"}]
    for iid in ids:
        view = at_step(api, iid, "disassemble")
        assert view["visits"]["disassemble"] == 1

    # The same batch again: answered from the first answer, and nothing moves.
    again = api.post(path, json=body).json()
    assert again["replayed"] is True and again["counts"] == advanced["counts"]
    # Advance disassemble for a named subset; a wrong id is reported, not fatal.
    subset = api.post(path, json={"batch_id": "b-dis", "action": "advance",
                                  "step": "disassemble", "instances": [ids[1], "nope"]}).json()
    assert subset["counts"] == {"advanced": 1, "rejected": 1}
    at_step(api, ids[1], "clean")
    assert instance(api, ids[2])["active_steps"] == ["disassemble"]

    bad = api.post(path, json={"batch_id": "b-x", "action": "advance"})
    assert bad.status_code == 422 and "advance needs step" in bad.text
    again_start = api.post(path, json={"batch_id": "b-start-2", "action": "start",
                                       "process": PROCESS,
                                       "subjects": [{"type": "part", "id": serials[0]}]}).json()
    assert again_start["counts"] == {"rejected": 1}
    assert again_start["results"][0]["reason"] == "instance_exists"
