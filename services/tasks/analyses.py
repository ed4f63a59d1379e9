"""Seed 003's API over Flowline: submit manufacturing data, follow it, read the verdict.

    POST /v1/analyses               {data: {sensors: {name: [values]}, ...}} -> 202 {workflow_id}
    GET  /v1/analyses/{id}          status and the status of every step's task
    GET  /v1/analyses/{id}/results  the verdict and each step's output; 404 until there is one

An analysis is an instance of the `manufacturing-analysis` process (any approved process with
the same handlers works) whose context carries the data. The start request goes to the router
through the message outbox, in the transaction that records the analysis, so a 202 is never
an analysis the router does not hear of.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from schemas.messages import Priority, StartInstance, Subject
from schemas.topics import INSTANCE_REQUESTS, START_V1
from services.common.errors import NotFound
from services.common.http import FiniteJsonRoute
from services.tasks import automation
from services.tasks.models import SUCCEEDED, Analysis, Instance, Job, Task
from services.tasks.service import TasksService
from services.tasks.timeutil import iso

router = APIRouter(route_class=FiniteJsonRoute)
PROCESS = "manufacturing-analysis"
VERDICT = "verdict"  # the handler whose output is the analysis' result


class SensorData(BaseModel):
    """Readings per sensor, in time order; other fields (batch, line, ...) are kept as given."""

    model_config = ConfigDict(extra="allow")
    sensors: dict[str, list[float]] = Field(min_length=1, max_length=500)

    @field_validator("sensors")
    @classmethod
    def _enough_readings(cls, sensors: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, values in sensors.items():
            if not 3 <= len(values) <= 100_000:
                raise ValueError(f"sensor {name!r} needs 3 to 100000 readings, has {len(values)}")
        return sensors


class AnalysisBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: SensorData
    process: str = Field(default=PROCESS, min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)
    subject: Subject | None = None
    work_order: str | None = Field(default=None, max_length=200)
    priority: Priority = Priority.MEDIUM


def _svc(request: Request) -> TasksService:
    svc: TasksService = request.app.state.tasks
    return svc


@router.post("/v1/analyses", status_code=202)
async def submit(request: Request, body: AnalysisBody,
                 tenant: str = Header("default", alias="X-Flowline-Tenant")) -> dict[str, Any]:
    """Start an analysis of `data`; answers its workflow id (the instance id) at once."""
    svc = _svc(request)
    analysis_id = str(uuid.uuid4())
    data = body.data.model_dump()
    start = StartInstance(
        instance_id=analysis_id, tenant=tenant or "default", process=body.process,
        version=body.version, subject=body.subject or Subject(type="dataset", id=analysis_id),
        work_order=body.work_order, priority=body.priority, context={"data": data},
    )
    now = svc.clock.now()
    async with svc.sessions() as s, s.begin():
        s.add(Analysis(analysis_id=analysis_id, tenant=start.tenant, process_key=body.process,
                       input=data, created_at=now))
        await s.run_sync(automation.enqueue, INSTANCE_REQUESTS.suffix, START_V1, analysis_id,
                         start.dump(), f"analysis:{analysis_id}/start", now)
    svc.kick()
    return {"workflow_id": analysis_id, "status": "pending", "process": body.process,
            "links": {"status": f"/v1/analyses/{analysis_id}",
                      "results": f"/v1/analyses/{analysis_id}/results"}}


async def _load(svc: TasksService, analysis_id: str) -> tuple[Analysis, Instance | None,
                                                            list[Task], dict[str, Job]]:
    async with svc.sessions() as s:
        analysis = await s.get(Analysis, analysis_id)
        if analysis is None:
            raise NotFound(f"no analysis {analysis_id!r}", code="analysis_not_found")
        instance = await s.get(Instance, analysis_id)
        tasks = list(await s.scalars(select(Task).where(Task.instance_id == analysis_id)
                                     .order_by(Task.created_at, Task.task_id)))
        jobs = {j.job_id: j for j in await s.scalars(
            select(Job).where(Job.instance_id == analysis_id))}
    return analysis, instance, tasks, jobs


def _status(instance: Instance | None) -> str:
    """pending (the router has not started it yet), running, on_hold, completed, cancelled."""
    if instance is None or instance.started_at is None:
        return "pending"
    return instance.status


@router.get("/v1/analyses/{analysis_id}")
async def status(request: Request, analysis_id: str) -> dict[str, Any]:
    """The analysis' status and its steps' tasks (with job attempts, progress and errors)."""
    analysis, instance, tasks, jobs = await _load(_svc(request), analysis_id)
    steps = []
    for task in tasks:
        job = jobs.get(task.task_id)
        steps.append({
            "task_id": task.task_id, "step": task.step, "visit": task.visit,
            "step_type": task.step_type, "status": job.status if job else task.status,
            "task_status": task.status, "handler": job.handler if job else None,
            "attempts": job.attempts if job else None,
            "progress": job.progress if job else None, "outcome": task.outcome,
            "error": job.error if job else None, "incident": task.incident,
            "created_at": iso(task.created_at), "completed_at": iso(task.completed_at),
        })
    return {
        "workflow_id": analysis_id, "process": analysis.process_key, "status": _status(instance),
        "terminal_status": instance.terminal_status if instance else None,
        "reason": instance.reason if instance else None,
        "active_steps": instance.active_steps if instance else [],
        "created_at": iso(analysis.created_at), "tasks": steps,
    }


@router.get("/v1/analyses/{analysis_id}/results")
async def results(request: Request, analysis_id: str) -> dict[str, Any]:
    """The verdict and the outputs it rests on; 404 `results_not_ready` until the verdict."""
    analysis, instance, _tasks, jobs = await _load(_svc(request), analysis_id)
    done = {j.step: j for j in sorted(jobs.values(), key=lambda j: j.visit)
            if j.status == SUCCEEDED}
    verdict = next((j for j in done.values() if j.handler == VERDICT), None)
    if verdict is None:
        raise NotFound(f"analysis {analysis_id} has no results yet ({_status(instance)})",
                       code="results_not_ready", details={"status": _status(instance)})
    output = verdict.output or {}
    return {
        "workflow_id": analysis_id, "status": _status(instance),
        "terminal_status": instance.terminal_status if instance else None,
        "verdict": output.get("verdict", verdict.outcome), "reasons": output.get("reasons", []),
        "result": output, "steps": {step: job.output for step, job in done.items()},
        "completed_at": iso(verdict.finished_at),
    }
