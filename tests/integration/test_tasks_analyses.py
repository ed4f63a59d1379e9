"""Seed 003's API: submit manufacturing data, follow the analysis, read the verdict.

The first tests run the tasks service alone (the test reads the start request it produces);
the last one runs everything as processes — definitions, router, tasks, gateway and a
`flowline worker` — and drives the `manufacturing-analysis` DAG through the gateway.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.topics import START_V1
from services.common.brokers import ensure_topics
from services.common.kafka import topic_table
from services.common.settings import Settings
from services.definitions.templates import load_template
from services.devstack import SERVICES, Stack
from services.tasks.api import create_app
from tests.conftest import free_port, wait_for
from tests.integration.test_tasks_http_steps import records_of
from tests.integration.test_tasks_service import serve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROCESS = "manufacturing-analysis"
NOISE = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.4, -0.3, 0.1,
         -0.2, 0.3, -0.1, 0.2, -0.3, 0.1, 0.0, -0.2, 0.3, -0.1]


def level(value: float) -> list[float]:
    return [value + n for n in NOISE]


def ramp(start: float, total_change: float, spike_at: int | None = None) -> list[float]:
    step = total_change / (len(NOISE) - 1)
    values = [start + i * step + n for i, n in enumerate(NOISE)]
    if spike_at is not None:
        values[spike_at] = start + 20
    return values


@pytest.fixture()
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings.kafka_bootstrap, topic_table(settings))
    return settings


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_app(topics)) as url:
        yield url


async def test_submit_answers_a_workflow_id_and_asks_the_router_to_start_it(
    client: httpx.AsyncClient, topics: Settings
) -> None:
    data = {"sensors": {"temp": level(70.0)}, "batch": "B-17"}
    r = await client.post("/v1/analyses", json={"data": data, "work_order": "WO-9"},
                          headers={"X-Flowline-Tenant": "plant-2"})
    assert r.status_code == 202, r.text
    workflow = r.json()["workflow_id"]
    assert r.json()["status"] == "pending"

    [start] = await records_of(topics, topics.requests_topic, workflow, START_V1)
    assert start.id == f"analysis:{workflow}/start"
    assert start.data["process"] == PROCESS and start.data["tenant"] == "plant-2"
    assert start.data["context"] == {"data": data} and start.data["work_order"] == "WO-9"
    assert start.data["subject"] == {"type": "dataset", "id": workflow}

    status = (await client.get(f"/v1/analyses/{workflow}")).json()
    assert (status["status"], status["tasks"]) == ("pending", [])
    r = await client.get(f"/v1/analyses/{workflow}/results")
    assert r.status_code == 404 and r.json()["error"]["code"] == "results_not_ready"
    r = await client.get(f"/v1/analyses/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "analysis_not_found"


@pytest.mark.parametrize("body", [
    {},
    {"data": {}},
    {"data": {"sensors": {}}},
    {"data": {"sensors": {"temp": [1.0, 2.0]}}},
    {"data": {"sensors": {"temp": [1.0, "hot", 3.0]}}},
    {"data": {"sensors": {"temp": [1.0, 2.0, 3.0]}}, "surprise": 1},
])
async def test_bad_data_is_a_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    r = await client.post("/v1/analyses", json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text


# --- the whole DAG, every service a process ---------------------------------------------------


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("analyses")
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, fetch_max_wait_ms=broker.fetch_max_wait_ms,
        topic_prefix=f"a{uuid.uuid4().hex[:8]}.",
        partitions=4, data_dir=data_dir, gateway_port=free_port(),
        definitions_url=f"http://127.0.0.1:{free_port()}",
        tasks_url=f"http://127.0.0.1:{free_port()}", router_web_port=free_port(),
    )
    with Stack(settings) as s:
        # No devstack worker: the one below, reaching the jobs API through the gateway, must be
        # the only one (with two, either may win a job and `worker` names the other).
        s.start(services=tuple(n for n in SERVICES if n != "worker"), timeout=90)
        gateway = f"http://127.0.0.1:{settings.gateway_port}"
        with httpx.Client(base_url=gateway, timeout=10) as api:
            r = api.post("/v1/processes", json=load_template(PROCESS))
            assert r.status_code == 201, r.text
            r = api.post(f"/v1/processes/{PROCESS}/approve")
            assert r.status_code == 200, r.text
        # The worker reaches the jobs API through the gateway, as a remote worker would.
        with (data_dir / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "worker", "--url", gateway,
                 "--name", "analysis-worker", "--lease", "10"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield s
        finally:
            worker.terminate()
            worker.wait(30)


def submit(api: httpx.Client, sensors: dict[str, list[float]]) -> str:
    r = api.post("/v1/analyses", json={"data": {"sensors": sensors}})
    assert r.status_code == 202, r.text
    return str(r.json()["workflow_id"])


def results(api: httpx.Client, workflow: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        r = api.get(f"/v1/analyses/{workflow}/results")
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    return wait_for(ready, 60, what=f"results of {workflow}")  # type: ignore[no-any-return]


def status_when(api: httpx.Client, workflow: str, want: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view = api.get(f"/v1/analyses/{workflow}").json()
        return view if view["status"] == want else None

    return wait_for(check, 60, what=f"{workflow} {want}")  # type: ignore[no-any-return]


def test_the_manufacturing_analysis_dag_gives_each_verdict(stack: Stack) -> None:
    gateway = f"http://127.0.0.1:{stack.settings.gateway_port}"
    with httpx.Client(base_url=gateway, timeout=10) as api:
        passing = submit(api, {"temp": level(70.0), "pressure": level(30.0)})
        warning = submit(api, {"temp": ramp(70.0, 7.0, spike_at=10), "pressure": level(30.0)})
        failing = submit(api, {"temp": ramp(70.0, 21.0), "pressure": level(30.0)})

        done = status_when(api, passing, "completed")
        assert done["terminal_status"] == "completed"
        ran = {t["step"]: t for t in done["tasks"]}
        assert set(ran) == {"detect_outliers", "analyze_trends", "synthesize", "verdict"}
        assert all(t["status"] == "succeeded" and t["attempts"] == 1 for t in ran.values())
        result = results(api, passing)
        assert result["verdict"] == "PASS" and result["reasons"] == []
        assert set(result["steps"]) == set(ran)

        # WARNING waits for an engineer; the results are there already.
        result = results(api, warning)
        assert result["verdict"] == "WARNING", result
        assert any("temp: 1 outlier" in r for r in result["reasons"])
        assert any("temp: rising trend" in r for r in result["reasons"])
        outliers = result["steps"]["detect_outliers"]["sensors"]["temp"]["outliers"]
        assert [o["index"] for o in outliers] == [10]

        def review_task() -> dict[str, Any] | None:
            items = api.get("/v1/tasks", params={"instance_id": warning,
                                                 "status": "open"}).json()["items"]
            return next((t for t in items if t["step"] == "engineering_review"), None)

        review = wait_for(review_task, 60, what="the engineering review task")
        assert review["role"] == "process_engineer"
        r = api.post(f"/v1/tasks/{review['task_id']}/complete",
                     json={"operator": "eng-1", "outcome": "Accept"})
        assert r.status_code == 202, r.text
        assert status_when(api, warning, "completed")["terminal_status"] == "completed"

        held = status_when(api, failing, "completed")
        assert held["terminal_status"] == "hold"  # the lot is put on hold
        result = results(api, failing)
        assert result["verdict"] == "FAIL"
        assert any("drifts" in r for r in result["reasons"])

        # The journey shows the branches ran and the job logs link each sensor.
        journey = api.get(f"/v1/instances/{passing}").json()["journey"]
        assert {"detect_outliers", "analyze_trends", "join", "verdict"} <= {
            v["step"] for v in journey}
        job = api.get(f"/v1/jobs/{passing}/detect_outliers/1").json()
        assert job["worker"] == "analysis-worker"
        assert {e["entity_tag"] for e in job["logs"]} >= {"temp", "pressure"}
        assert job["stats"]["sensorsProcessed"] == 2
