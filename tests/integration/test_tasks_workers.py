"""Handler jobs and `flowline worker`: leases, heartbeats, progress, step logs, retries.

The tasks service runs for real (broker, SQLite or PostgreSQL, HTTP); workers are a real
`flowline worker` process (killed with SIGKILL mid-task) or the same Worker class in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.topics import COMPLETED_V1, HOLD_V1
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks.api import create_app
from services.tasks.config import AutomationSettings
from services.workers.client import JobsClient
from services.workers.registry import REGISTRY
from services.workers.worker import Worker
from tests.conftest import async_wait_for
from tests.integration import tasks_worker_handlers  # noqa: F401  (registers the test handlers)
from tests.integration.test_tasks_http_steps import records_of
from tests.integration.test_tasks_service import command, new_instance, send_command, serve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AUTOMATION = AutomationSettings(scheduler_interval=0.1, backoff_base=0.05)


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_app(topics, automation=AUTOMATION)) as url:
        yield url


def handler_command(inst: str, step: str, name: str, **fields: Any) -> Any:
    action = {"type": "handler", "name": name, **fields.pop("action_extra", {})}
    return command(inst, step, step_type="automated", role=None, action=action,
                   context={"lot": "L7"}, **fields)


async def job_where(client: httpx.AsyncClient, job_id: str,
                    ready: Callable[[dict[str, Any]], bool], what: str,
                    within: float = 30) -> dict[str, Any]:
    async def check() -> dict | None:
        r = await client.get(f"/v1/jobs/{job_id}")
        return dict(r.json()) if r.status_code == 200 and ready(r.json()) else None

    return dict(await async_wait_for(check, within=within, what=f"job {job_id}: {what}"))


@contextlib.asynccontextmanager
async def in_process_worker(url: str, handlers: list[str], name: str,
                            lease_s: float = 2.0) -> AsyncIterator[Worker]:
    client = JobsClient(url)
    worker = Worker(client, registry=REGISTRY, handlers=handlers, name=name, lease_s=lease_s,
                    idle_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.aclose()


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def test_lease_protocol_completes_a_job_exactly_once(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await send_command(producer, handler_command(inst, "echo_step", "echo"))
    job_id = f"{inst}/echo_step/1"
    await job_where(client, job_id, lambda j: j["status"] == "queued", "queued")

    r = await client.post("/v1/jobs/claim", json={"handlers": ["echo"]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = await client.post("/v1/jobs/claim", json={"worker": "t", "handlers": ["echo"],
                                                  "lease_s": 10_000})
    assert r.status_code == 422 and r.json()["error"]["code"] == "lease_too_long"
    r = await client.post("/v1/jobs/claim", json={"worker": "t", "handlers": ["other"]})
    assert r.status_code == 204

    # A worker claims it, then goes silent: the lease expires and the job is queued again.
    r = await client.post("/v1/jobs/claim", json={"worker": "silent", "handlers": ["echo"],
                                                  "lease_s": 0.5})
    assert r.status_code == 200, r.text
    first = r.json()
    job = first["job"]
    assert (job["job_id"], job["attempts"], job["worker"]) == (job_id, 1, "silent")
    assert job["input"]["context"] == {"lot": "L7"} and job["upstream"] == {}
    assert job["input"]["subject"] == {"type": "part", "id": "SN-1"}
    assert "lease_token" not in job
    r = await client.post(f"/v1/jobs/{job_id}/heartbeat", json={"lease_token": "forged"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_lease"
    r = await client.post(f"/v1/jobs/{inst}/nope/1/heartbeat", json={"lease_token": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    await job_where(client, job_id, lambda j: j["status"] == "queued", "lease expired")

    requeued = (await client.get(f"/v1/jobs/{job_id}")).json()
    [expired] = [e for e in requeued["logs"] if "lease expired: silent" in e["message"]]
    # Claimable again after the backoff of one failed attempt: base * 2**1 = 0.1 s.
    assert seconds(expired["at"], requeued["available_at"]) == pytest.approx(0.1)

    async def claimed_again() -> dict | None:
        r = await client.post("/v1/jobs/claim", json={"worker": "second", "handlers": ["echo"],
                                                      "lease_s": 30})
        return dict(r.json()) if r.status_code == 200 else None

    second = await async_wait_for(claimed_again, within=10, what="the job claimable again")
    assert second["job"]["attempts"] == 2 and second["lease_token"] != first["lease_token"]
    token = second["lease_token"]

    # The silent worker wakes up with its result: too late, its lease is stale.
    r = await client.post(f"/v1/jobs/{job_id}/complete",
                          json={"lease_token": first["lease_token"], "output": {"x": 1}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_lease"

    r = await client.post(f"/v1/jobs/{job_id}/progress",
                          json={"lease_token": token, "progress": 0.5, "message": "half"})
    assert r.status_code == 200 and r.json()["progress"] == 0.5
    r = await client.post(f"/v1/jobs/{job_id}/progress",
                          json={"lease_token": token, "progress": 1.5})
    assert r.status_code == 422
    r = await client.post(f"/v1/jobs/{job_id}/logs", json={"lease_token": token, "entries": [
        {"message": "Created P-101", "entity_tag": "P-101", "entity_route": "/assets/123",
         "entity_id": "123", "entity_type": "Asset"}]})
    assert r.status_code == 201 and r.json()["added"] == 1
    body = {"lease_token": token, "outcome": "pass", "output": {"echo": "L7"},
            "stats": {"itemsProcessed": 1}}
    r = await client.post(f"/v1/jobs/{job_id}/complete", json=body)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["event_id"]) == ("succeeded", f"job:{job_id}")
    assert done["stats"]["itemsProcessed"] == 1 and "duration_ms" in done["stats"]
    again = await client.post(f"/v1/jobs/{job_id}/complete", json=body)  # a lost answer
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    r = await client.post(f"/v1/jobs/{job_id}/heartbeat", json={"lease_token": token})
    assert r.status_code == 409

    completions = await records_of(topics, topics.completions_topic, inst, COMPLETED_V1,
                                   settle=1.0)
    assert [c.id for c in completions] == [f"job:{job_id}"]
    assert completions[0].data["outcome"] == "pass"
    assert completions[0].data["measurements"] == {"echo": "L7"}
    assert completions[0].data["equipment"] == "second"

    view = (await client.get(f"/v1/jobs/{job_id}")).json()
    linked = [e for e in view["logs"] if e["entity_tag"] == "P-101"]
    assert linked and linked[0]["entity_route"] == "/assets/123" and linked[0]["attempt"] == 2
    assert any("lease expired: silent" in e["message"] for e in view["logs"])
    task = (await client.get(f"/v1/tasks/{job_id}")).json()
    assert (task["status"], task["outcome"]) == ("completed", "pass")

    # The next step's job reads what this one produced.
    await send_command(producer, handler_command(inst, "next", "echo"))
    await job_where(client, f"{inst}/next/1", lambda j: j["status"] == "queued", "queued")
    r = await client.post("/v1/jobs/claim", json={"worker": "w", "handlers": ["echo"]})
    assert r.json()["job"]["upstream"] == {"echo_step": {"echo": "L7"}}


async def test_a_killed_worker_s_job_is_retried_not_lost_and_completed_once(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, tasks_url: str,
    tmp_path: Path,
) -> None:
    inst = new_instance()
    await send_command(producer, handler_command(inst, "analyze", "slow_once"))
    job_id = f"{inst}/analyze/1"
    lease = 1.5
    log_file = tmp_path / "w1.log"
    with log_file.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "worker", "--module",
            "tests.integration.tasks_worker_handlers", "-H", "slow_once", "--lease", str(lease),
            "--url", tasks_url, "--name", "w1",
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        # w1 holds the job past its first lease: heartbeats extend it, and carry the progress.
        running = await job_where(
            client, job_id,
            lambda j: j["status"] == "running" and j["worker"] == "w1" and j["progress"] == 0.5
            and seconds(j["started_at"], j["heartbeat_at"]) > 2 * lease,
            "held by w1 through heartbeats")
        assert running["attempts"] == 1
        proc.send_signal(signal.SIGKILL)  # a crash mid-task: no fail, no goodbye
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 30)
    output = log_file.read_text()
    assert "w1 running handlers slow_once" in output, output

    requeued = await job_where(client, job_id, lambda j: j["status"] == "queued",
                               "queued again once w1's lease expired")
    assert requeued["attempts"] == 1 and "w1 stopped heartbeating" in requeued["error"]

    async with in_process_worker(tasks_url, ["slow_once"], "w2"):
        done = await job_where(client, job_id, lambda j: j["status"] == "succeeded",
                               "completed by w2")
    assert (done["attempts"], done["worker"]) == (2, "w2")
    assert done["output"] == {"attempt": 2, "lot": "L7"}
    assert done["stats"]["itemsProcessed"] == 1
    messages = [(e["attempt"], e["message"]) for e in done["logs"]]
    assert any(a == 1 and m.startswith("attempt 1 on") for a, m in messages)  # shipped by w1
    assert any(a == 2 and m.startswith("attempt 2 on") for a, m in messages)

    completions = await records_of(topics, topics.completions_topic, inst, COMPLETED_V1,
                                   settle=1.5)
    assert [c.id for c in completions] == [f"job:{job_id}"]
    assert completions[0].data["outcome"] == "pass"


async def test_failing_handlers_are_retried_with_backoff_then_hold_the_instance(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, tasks_url: str
) -> None:
    flaky, broken, refuses = new_instance(), new_instance(), new_instance()
    await send_command(producer, handler_command(flaky, "s", "flaky"))
    await send_command(producer, handler_command(broken, "s", "broken",
                                                 action_extra={"max_attempts": 2}))
    await send_command(producer, handler_command(refuses, "s", "refuses"))
    started = time.monotonic()
    async with in_process_worker(tasks_url, ["flaky", "broken", "refuses"], "w"):
        ok = await job_where(client, f"{flaky}/s/1", lambda j: j["status"] == "succeeded",
                             "flaky succeeded")
        gave_up = await job_where(client, f"{broken}/s/1", lambda j: j["status"] == "failed",
                                  "broken failed")
        refused = await job_where(client, f"{refuses}/s/1", lambda j: j["status"] == "failed",
                                  "refuses failed")
    assert time.monotonic() - started < 20
    assert ok["attempts"] == 2 and ok["output"] == {"attempt": 2}
    errors = [e["message"] for e in ok["logs"] if e["level"] == "ERROR"]
    assert errors == ["attempt 1 failed: RuntimeError: the sensor gateway timed out"]
    assert gave_up["attempts"] == 2 and refused["attempts"] == 1  # no retry for bad input

    [hold] = await records_of(topics, topics.requests_topic, broken, HOLD_V1)
    assert hold.id == f"hold:{broken}/s/1/2"
    assert "still broken on attempt 2 (after 2 attempts)" in hold.data["reason"]
    [hold] = await records_of(topics, topics.requests_topic, refuses, HOLD_V1)
    assert "InvalidInput: lot L0 has no readings" in hold.data["reason"]
    assert "attempts" not in hold.data["reason"]
    task = (await client.get(f"/v1/tasks/{refuses}/s/1")).json()
    assert "lot L0 has no readings" in task["incident"]
