"""The jobs API workers speak (`flowline worker`), and the timers' read side.

    POST /v1/jobs/claim               {worker, handlers, lease_s} -> 200 {job, lease_token} | 204
    POST /v1/jobs/{id}/heartbeat      {lease_token, lease_s?}      extend the lease
    POST /v1/jobs/{id}/progress       {lease_token, progress, message?}
    POST /v1/jobs/{id}/logs           {lease_token, entries: [{message, level, entity_*}]}
    POST /v1/jobs/{id}/complete       {lease_token, outcome?, output, measurements?, stats?}
    POST /v1/jobs/{id}/fail           {lease_token, error, stack?, retryable?}
    POST /v1/jobs/{id}/retry          run a failed job again (after an incident)
    GET  /v1/jobs?instance_id=&status=&handler=,  GET /v1/jobs/{id},  GET /v1/jobs/{id}/logs
    GET  /v1/timers?instance_id=&status=,  GET /v1/timers/{id}

A call with a lease that is no longer the job's (expired and taken back, or the job finished)
gets 409 `stale_lease`. Job ids are command ids (`instance/step/visit`), hence `{job_id:path}`
with the action routes declared first.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from services.common.errors import Invalid, NotFound
from services.common.http import FiniteJsonRoute
from services.tasks.jobs import JobStore, LogEntry
from services.tasks.models import Job, JobLog, Timer
from services.tasks.service import TasksService
from services.tasks.timeutil import iso

router = APIRouter(route_class=FiniteJsonRoute)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Body):
    worker: str = Field(min_length=1, max_length=200)
    handlers: list[str] = Field(min_length=1, max_length=200)
    lease_s: float | None = Field(default=None, gt=0)


class LeaseBody(_Body):
    lease_token: str = Field(min_length=1, max_length=64)
    lease_s: float | None = Field(default=None, gt=0)


class ProgressBody(LeaseBody):
    progress: float = Field(ge=0, le=1)
    message: str | None = Field(default=None, max_length=2000)


class LogBody(_Body):
    message: str = Field(min_length=1, max_length=4000)
    level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = "INFO"
    entity_tag: str | None = Field(default=None, max_length=200)
    entity_route: str | None = Field(default=None, max_length=400)
    entity_id: str | None = Field(default=None, max_length=200)
    entity_type: str | None = Field(default=None, max_length=100)


class LogsBody(_Body):
    lease_token: str = Field(min_length=1, max_length=64)
    entries: list[LogBody] = Field(min_length=1, max_length=500)


class CompleteBody(_Body):
    lease_token: str = Field(min_length=1, max_length=64)
    outcome: str | None = Field(default=None, min_length=1, max_length=200)
    output: dict[str, Any] = Field(default_factory=dict)
    measurements: dict[str, Any] | None = None  # what the router sees; default: the output
    stats: dict[str, Any] = Field(default_factory=dict)


class FailBody(_Body):
    lease_token: str = Field(min_length=1, max_length=64)
    error: str = Field(min_length=1, max_length=4000)
    stack: str | None = Field(default=None, max_length=20000)
    retryable: bool = True


def _svc(request: Request) -> TasksService:
    svc: TasksService = request.app.state.tasks
    return svc


def job_view(job: Job) -> dict[str, Any]:
    """A job as the API shows it (never its lease token: only the holder knows that)."""
    return {
        "job_id": job.job_id, "instance_id": job.instance_id, "tenant": job.tenant,
        "step": job.step, "visit": job.visit, "kind": job.kind, "handler": job.handler,
        "status": job.status, "attempts": job.attempts, "max_attempts": job.max_attempts,
        "available_at": iso(job.available_at), "worker": job.worker,
        "lease_expires_at": iso(job.lease_expires_at), "heartbeat_at": iso(job.heartbeat_at),
        "progress": job.progress, "progress_message": job.progress_message,
        "outcome": job.outcome, "output": job.output, "stats": job.stats, "error": job.error,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def log_view(entry: JobLog) -> dict[str, Any]:
    return {"attempt": entry.attempt, "at": iso(entry.at), "level": entry.level,
            "message": entry.message, "entity_tag": entry.entity_tag,
            "entity_route": entry.entity_route, "entity_id": entry.entity_id,
            "entity_type": entry.entity_type}


def timer_view(timer: Timer) -> dict[str, Any]:
    return {"timer_id": timer.timer_id, "instance_id": timer.instance_id, "step": timer.step,
            "visit": timer.visit, "wake_at": iso(timer.wake_at), "status": timer.status,
            "created_at": iso(timer.created_at), "fired_at": iso(timer.fired_at)}


def _lease(svc: TasksService, asked: float | None) -> float:
    lease = asked or svc.automation.default_lease
    if lease > svc.automation.max_lease:
        raise Invalid(f"lease_s {lease:g} is longer than the longest lease, "
                      f"{svc.automation.max_lease:g} s: heartbeat instead", code="lease_too_long")
    return lease


@router.post("/v1/jobs/claim", response_model=None)
async def claim(request: Request, body: ClaimBody) -> dict[str, Any] | Response:
    """Lease the oldest ready job one of `handlers` runs; 204 when there is none."""
    svc = _svc(request)
    lease_s = _lease(svc, body.lease_s)
    lease = await svc.jobs.claim(body.worker, svc.clock.now(), lease_s, handlers=body.handlers)
    if lease is None:
        return Response(status_code=204)
    job = lease.job
    return {"lease_token": lease.token, "lease_s": lease_s,
            "job": {**job_view(job), "input": job.input,
                    "upstream": await svc.jobs.outputs(job.instance_id)}}


@router.post("/v1/jobs/{job_id:path}/heartbeat")
async def heartbeat(request: Request, job_id: str, body: LeaseBody) -> dict[str, Any]:
    svc = _svc(request)
    job = await svc.jobs.heartbeat(job_id, body.lease_token, svc.clock.now(),
                                   _lease(svc, body.lease_s))
    return job_view(job)


@router.post("/v1/jobs/{job_id:path}/progress")
async def progress(request: Request, job_id: str, body: ProgressBody) -> dict[str, Any]:
    """Seed 004's `update_progress`; it extends the lease too."""
    svc = _svc(request)
    job = await svc.jobs.heartbeat(job_id, body.lease_token, svc.clock.now(),
                                   _lease(svc, body.lease_s), body.progress, body.message)
    return job_view(job)


@router.post("/v1/jobs/{job_id:path}/logs", status_code=201)
async def add_logs(request: Request, job_id: str, body: LogsBody) -> dict[str, Any]:
    """Seed 004's `log_step`, batched."""
    svc = _svc(request)
    entries = [LogEntry(**e.model_dump()) for e in body.entries]
    added = await svc.jobs.add_logs(job_id, body.lease_token, svc.clock.now(), entries)
    return {"job_id": job_id, "added": added}


@router.post("/v1/jobs/{job_id:path}/complete")
async def complete(request: Request, job_id: str, body: CompleteBody) -> dict[str, Any]:
    """Finish the job: the step's completion goes to the router, once."""
    svc = _svc(request)
    job = await svc.jobs.complete(job_id, body.lease_token, svc.clock.now(),
                                  outcome=body.outcome, output=body.output,
                                  measurements=body.measurements, stats=body.stats)
    svc.kick()
    return {**job_view(job), "event_id": f"job:{job_id}"}


@router.post("/v1/jobs/{job_id:path}/fail")
async def fail(request: Request, job_id: str, body: FailBody) -> dict[str, Any]:
    """The attempt failed: retried after a backoff, or an incident once attempts are spent."""
    svc = _svc(request)
    job = await svc.jobs.fail(job_id, body.lease_token, svc.clock.now(), body.error, body.stack,
                              body.retryable)
    svc.kick()
    return job_view(job)


@router.post("/v1/jobs/{job_id:path}/retry")
async def retry(request: Request, job_id: str) -> dict[str, Any]:
    """Queue a failed job again from its first attempt (resume the held instance too)."""
    svc = _svc(request)
    job = await svc.jobs.retry(job_id, svc.clock.now())
    svc.kick()
    return job_view(job)


@router.get("/v1/jobs")
async def list_jobs(
    request: Request, instance_id: str | None = None, status: str | None = None,
    handler: str | None = None, limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    rows, total = await _svc(request).jobs.list(instance_id, status, handler, limit, offset)
    return {"items": [job_view(j) for j in rows], "total": total}


@router.get("/v1/jobs/{job_id:path}/logs")
async def job_logs(request: Request, job_id: str,
                   limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
    jobs: JobStore = _svc(request).jobs
    await jobs.get(job_id)  # 404 for an unknown job, not an empty list
    return {"job_id": job_id, "items": [log_view(e) for e in await jobs.logs(job_id, limit)]}


@router.get("/v1/jobs/{job_id:path}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    jobs: JobStore = _svc(request).jobs
    job = await jobs.get(job_id)
    return {**job_view(job), "logs": [log_view(e) for e in await jobs.logs(job_id)]}


@router.get("/v1/timers")
async def list_timers(
    request: Request, instance_id: str | None = None, status: str | None = None,
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    query = select(Timer)
    if instance_id:
        query = query.where(Timer.instance_id == instance_id)
    if status:
        query = query.where(Timer.status.in_(status.split(",")))
    async with _svc(request).sessions() as s:
        total = await s.scalar(select(func.count()).select_from(query.subquery()))
        rows = await s.scalars(query.order_by(Timer.wake_at, Timer.timer_id)
                               .limit(limit).offset(offset))
        return {"items": [timer_view(t) for t in rows], "total": int(total or 0)}


@router.get("/v1/timers/{timer_id:path}")
async def get_timer(request: Request, timer_id: str) -> dict[str, Any]:
    async with _svc(request).sessions() as s:
        timer = await s.get(Timer, timer_id)
    if timer is None:
        raise NotFound(f"no timer {timer_id!r}", code="timer_not_found")
    return timer_view(timer)
