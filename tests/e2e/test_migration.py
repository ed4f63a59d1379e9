"""Migrating running instances to a new version, end to end: gateway plan and dry run, the
router's `migrate` control, the tasks read model and inbox following along."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from services.definitions.templates import load_template
from tests.conftest import wait_for
from tests.e2e.test_remanufacturing import PROCESS, advance, at_step, instance, start


def version_two() -> dict[str, Any]:
    """`receive` renamed to `intake`; five reworks allowed instead of three."""
    graph = copy.deepcopy(load_template(PROCESS))
    def fix(s: str) -> str:
        return "intake" if s == "receive" else s
    for step in graph["steps"]:
        step["id"] = fix(step["id"])
        if step["id"] == "rework":
            step["max_visits"] = 5
    for edge in graph["edges"]:
        edge["from"], edge["to"] = fix(edge["from"]), fix(edge["to"])
    return graph


def on_version(api: httpx.Client, iid: str, n: int) -> dict[str, Any]:
    return wait_for(lambda: (v := instance(api, iid)) and v["process"]["version"] == n and v,
                    30, what=f"{iid} on v{n}")  # type: ignore[no-any-return]


def test_dry_run_then_batch_migration_with_a_step_map(api: httpx.Client) -> None:
    first, second = start(api), start(api)
    for step in ("receive", "disassemble", "clean"):
        advance(api, first, step)
    at_step(api, first, "inspect")
    at_step(api, second, "receive")
    assert api.post("/v1/processes", json=version_two()).status_code == 201
    assert api.post(f"/v1/processes/{PROCESS}/approve").json()["version"] == 2

    plan = api.post(f"/v1/instances/{second}/migrate", json={"to_version": 2, "dry_run": True})
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"]["ok"] is False
    assert "'receive' is not in v2" in plan.json()["plan"]["problems"][0]
    refused = api.post(f"/v1/instances/{second}/migrate", json={"to_version": 2})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_migratable"

    body = {"process": PROCESS, "to_version": 2, "step_map": {"receive": "intake"}}
    dry = api.post("/v1/migrations", json={**body, "dry_run": True}).json()
    assert dry["counts"] == {"would_migrate": 2}
    assert api.post("/v1/migrations", json=body).json()["error"]["code"] == "batch_id_required"
    done = api.post("/v1/migrations", json={**body, "batch_id": "eco-17"})
    assert done.status_code == 200 and done.json()["counts"] == {"requested": 2}

    moved = on_version(api, second, 2)
    assert moved["active_steps"] == ["intake"]
    on_version(api, first, 2)
    # The inbox follows: the old receive task is gone, the new intake task is open.
    tasks = api.get("/v1/tasks", params={"instance_id": second, "status": "open"}).json()
    assert [t["step"] for t in tasks["items"]] == ["intake"]
    advance(api, second, "intake")
    at_step(api, second, "disassemble")
    # v2 allows five reworks: the fourth failed inspection still goes to rework.
    for n in range(1, 5):
        advance(api, first, "inspect", "fail")
        at_step(api, first, "rework", visit=n)
        advance(api, first, "rework")
    at_step(api, first, "inspect", visit=5)
    assert instance(api, first)["visits"]["rework"] == 4

    again = api.post("/v1/migrations", json={**body, "batch_id": "eco-17"}).json()
    assert again["counts"] == {"refused": 2}  # already on v2: nothing to do
    missing = api.post(f"/v1/instances/{second}/migrate", json={"to_version": 9,
                                                                 "dry_run": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_such_version"
    bad = api.post(f"/v1/instances/{second}/migrate", json={"to_version": "two"})
    assert bad.status_code == 422
