"""Every shipped template runs end to end on the real services to the terminal it should.

Installed and approved through the gateway, driven by completions through the gateway (an
operator, equipment or a worker would send the same), routed by the real router, read back
from the journey read model. The paths are the ones `tests/unit/test_definitions_templates.py`
runs through the pure core; `manufacturing-analysis` runs with its worker handlers in
`tests/integration/test_tasks_analyses.py`.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.devstack import Stack
from tests.e2e.test_remanufacturing import at_step, finished
from tests.unit.test_definitions_templates import RUNS

CASES = [(name, path, terminal) for name, runs in RUNS.items() for path, terminal in runs]

pytestmark = pytest.mark.usefixtures("installed")


@pytest.fixture(scope="module")
def installed(stack: Stack) -> set[str]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.gateway_port}",
                      timeout=30) as api:
        for name in RUNS:
            assert api.post(f"/v1/templates/{name}/install").status_code == 201
            approved = api.post(f"/v1/processes/{name}/approve")
            assert approved.status_code == 200, approved.text
    return set(RUNS)


@pytest.mark.parametrize(("name", "path", "terminal"), CASES,
                         ids=[f"{n}-{t}-{len(p)}" for n, p, t in CASES])
def test_template_runs_end_to_end(api: httpx.Client, name: str,
                                  path: list[tuple[str, str | None]], terminal: str) -> None:
    iid = f"{name}-{uuid.uuid4().hex[:8]}"
    r = api.post("/v1/instances", json={"process": name, "instance_id": iid,
                                        "subject": {"type": "case", "id": iid}})
    assert r.status_code == 202, r.text
    entered: dict[str, int] = {}
    for step, outcome in path:
        entered[step] = entered.get(step, 0) + 1
        view = at_step(api, iid, step, visit=entered[step])
        body: dict[str, Any] = {"step": step, "visit": view["visits"][step], "operator": "e2e"}
        if outcome is not None:
            body["outcome"] = outcome
        done = api.post(f"/v1/instances/{iid}/completions", json=body)
        assert done.status_code == 202, done.text
    view = finished(api, iid, within=60)
    assert view["terminal_status"] == terminal
    assert [v["step"] for v in view["journey"] if v["step"] in entered] == [s for s, _ in path]
