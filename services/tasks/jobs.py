"""Leased jobs: claim, heartbeat, progress, step logs, complete, fail, expire, retry.

A claim hands the job to one holder with a fresh lease token; every later call must present it.
Each write starts with a conditional UPDATE on (job, status, token), so of two racing calls
exactly one wins, and on SQLite the transaction takes the write lock before it reads anything.
A holder that stops heartbeating loses the job when its lease expires (`reap_expired`): the job
is queued again after a backoff, or given up once its attempts are spent; the old holder's
token is then stale and its calls get 409. So a job's step is completed at most once, and a
crashed worker's job is retried, not lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.messages import StepCompletion
from services.common.errors import Conflict, NotFound
from services.tasks import automation, metrics
from services.tasks.actions import HANDLER, backoff_delay
from services.tasks.config import AutomationSettings
from services.tasks.models import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobLog,
    Task,
)

LEVELS = frozenset({"DEBUG", "INFO", "WARN", "ERROR"})


@dataclass(frozen=True)
class Lease:
    """A claimed job and the token that proves who holds it."""

    job: Job
    token: str


@dataclass(frozen=True)
class LogEntry:
    """One `log_step` (seed 004): a message, its level, and a link to the entity it concerns."""

    message: str
    level: str = "INFO"
    entity_tag: str | None = None
    entity_route: str | None = None
    entity_id: str | None = None
    entity_type: str | None = None


class JobStore:
    """The jobs table, as the HTTP API, the HTTP runner and the scheduler use it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: AutomationSettings) -> None:
        self.sessions, self.settings = sessions, settings

    # --- reads -------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        async with self.sessions() as s:
            job = await s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", code="job_not_found")
        return job

    async def logs(self, job_id: str, limit: int = 500) -> list[JobLog]:
        async with self.sessions() as s:
            return list(await s.scalars(select(JobLog).where(JobLog.job_id == job_id)
                                        .order_by(JobLog.id).limit(limit)))

    async def list(self, instance_id: str | None, status: str | None, handler: str | None,
                   limit: int, offset: int) -> tuple[list[Job], int]:
        query = select(Job)
        if instance_id:
            query = query.where(Job.instance_id == instance_id)
        if status:
            query = query.where(Job.status.in_(status.split(",")))
        if handler:
            query = query.where(Job.handler == handler)
        async with self.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = await s.scalars(query.order_by(Job.created_at, Job.job_id)
                                   .limit(limit).offset(offset))
            return list(rows), int(total or 0)

    async def outputs(self, instance_id: str) -> dict[str, Any]:
        """The outputs of the instance's succeeded jobs by step (latest visit wins): what a
        downstream handler reads from its upstream steps (seed 003's dependent tasks)."""
        async with self.sessions() as s:
            rows = await s.scalars(select(Job).where(Job.instance_id == instance_id,
                                                     Job.status == SUCCEEDED)
                                   .order_by(Job.visit))
            return {job.step: job.output for job in rows}

    # --- the holder's calls ------------------------------------------------------------------

    async def claim(self, worker: str, now: datetime, lease_s: float,
                    kinds: Sequence[str] = (HANDLER,),
                    handlers: Sequence[str] | None = None) -> Lease | None:
        """The oldest ready job of `kinds` (and `handlers`), leased to `worker`; None if none."""
        query = select(Job.job_id).where(
            Job.status == QUEUED, Job.kind.in_(kinds), Job.available_at <= now,
            Job.instance_id.not_in(automation.held_instances()),
        )
        if handlers is not None:
            query = query.where(Job.handler.in_(handlers))
        async with self.sessions() as s:
            candidates = list(await s.scalars(
                query.order_by(Job.available_at, Job.created_at, Job.job_id).limit(20)))
        for job_id in candidates:
            token = uuid.uuid4().hex
            async with self.sessions() as s, s.begin():
                won = await self._write(s, update(Job).where(
                    Job.job_id == job_id, Job.status == QUEUED,
                ).values(status=RUNNING, attempts=Job.attempts + 1, lease_token=token,
                         lease_expires_at=now + timedelta(seconds=lease_s), worker=worker,
                         heartbeat_at=now, started_at=now, progress=None,
                         progress_message=None))
                if not won:
                    continue  # another worker was quicker: try the next one
                job = await s.get(Job, job_id, populate_existing=True)
                assert job is not None
                s.add(self._log(job, now, LogEntry(
                    f"attempt {job.attempts} of {job.max_attempts} started by {worker}")))
                metrics.JOB_ATTEMPTS.labels(job.kind).inc()
                return Lease(job, token)
        return None

    async def heartbeat(self, job_id: str, token: str, now: datetime, lease_s: float,
                        progress: float | None = None, message: str | None = None) -> Job:
        """Extend the lease (and record progress, seed 004's `update_progress`)."""
        values: dict[str, Any] = {"heartbeat_at": now,
                                  "lease_expires_at": now + timedelta(seconds=lease_s)}
        if progress is not None:
            values.update(progress=progress, progress_message=message)
        async with self.sessions() as s, s.begin():
            await self._hold(s, job_id, token, values)
            job = await s.get(Job, job_id, populate_existing=True)
            assert job is not None
            return job

    async def add_logs(self, job_id: str, token: str, now: datetime,
                       entries: Sequence[LogEntry]) -> int:
        """Append step logs to the current attempt; returns how many."""
        async with self.sessions() as s, s.begin():
            await self._hold(s, job_id, token, {"heartbeat_at": now})
            job = await s.get(Job, job_id, populate_existing=True)
            assert job is not None
            s.add_all(self._log(job, now, entry) for entry in entries)
            return len(entries)

    async def next_attempt(self, job_id: str, token: str, now: datetime, lease_s: float) -> Job:
        """The holder starts another attempt in the same lease (the HTTP runner's retries)."""
        async with self.sessions() as s, s.begin():
            await self._hold(s, job_id, token, {
                "attempts": Job.attempts + 1, "heartbeat_at": now, "started_at": now,
                "lease_expires_at": now + timedelta(seconds=lease_s)})
            job = await s.get(Job, job_id, populate_existing=True)
            assert job is not None
            s.add(self._log(job, now, LogEntry(
                f"attempt {job.attempts} of {job.max_attempts} started by {job.worker}")))
            metrics.JOB_ATTEMPTS.labels(job.kind).inc()
            return job

    async def attempt_failed(self, job_id: str, token: str, now: datetime, error: str,
                             retry_in: float, lease_s: float) -> None:
        """The holder will retry after `retry_in` s: log why, keep the lease over the wait."""
        async with self.sessions() as s, s.begin():
            await self._hold(s, job_id, token, {
                "error": error[:4000], "heartbeat_at": now,
                "lease_expires_at": now + timedelta(seconds=retry_in + lease_s)})
            job = await s.get(Job, job_id, populate_existing=True)
            assert job is not None
            s.add(self._log(job, now, LogEntry(
                f"attempt {job.attempts} failed, retrying in {retry_in:g}s: {error}"[:4000],
                "WARN")))

    async def complete(self, job_id: str, token: str, now: datetime, *, outcome: str | None,
                       output: dict[str, Any], measurements: dict[str, Any] | None = None,
                       stats: dict[str, Any] | None = None) -> Job:
        """Finish the job and owe the router the step's completion, exactly once: a second
        call with the same token is answered with the job as it is; a stale token gets 409."""
        async with self.sessions() as s, s.begin():
            won = await self._write(s, update(Job).where(
                Job.job_id == job_id, Job.status == RUNNING, Job.lease_token == token,
            ).values(status=SUCCEEDED, outcome=outcome, output=output, progress=1.0,
                     finished_at=now, lease_expires_at=None))
            job = await s.get(Job, job_id, populate_existing=True)
            if job is None:
                raise NotFound(f"no job {job_id!r}", code="job_not_found")
            if not won:
                if job.status == SUCCEEDED and job.lease_token == token:
                    return job  # our own completion, asked again (a lost answer)
                raise self._stale(job)
            started = job.started_at or now
            job.stats = {"duration_ms": round((now - started).total_seconds() * 1000),
                         **(stats or {})}
            s.add(self._log(job, now, LogEntry(f"completed: outcome {outcome or '(default)'}")))
            completion = StepCompletion(
                instance_id=job.instance_id, step=job.step, visit=job.visit, outcome=outcome,
                measurements=output if measurements is None else measurements,
                equipment=job.worker, note=f"{job.kind} {job.handler or ''}".strip(),
            )
            await automation.complete_step(s, job_id, completion, f"job:{job_id}", now)
            metrics.JOBS.labels(job.kind, "succeeded").inc()
            return job

    async def fail(self, job_id: str, token: str, now: datetime, error: str,
                   stack: str | None = None, retryable: bool = True) -> Job:
        """The holder's attempt failed: queue the job again after a backoff, or give up (put
        the instance on hold with the error) when it is permanent or the attempts are spent."""
        async with self.sessions() as s, s.begin():
            await self._hold(s, job_id, token, {"lease_expires_at": None})
            return await self._after_failure(s, job_id, now, error, stack, retryable)

    async def reap_expired(self, now: datetime) -> int:
        """Take back every job whose holder stopped heartbeating; returns how many."""
        async with self.sessions() as s:
            expired = list(await s.execute(
                select(Job.job_id, Job.lease_token, Job.worker)
                .where(Job.status == RUNNING, Job.lease_expires_at < now).limit(200)))
        taken = 0
        for job_id, token, worker in expired:
            async with self.sessions() as s, s.begin():
                won = await self._write(s, update(Job).where(
                    Job.job_id == job_id, Job.status == RUNNING, Job.lease_token == token,
                    Job.lease_expires_at < now,
                ).values(lease_expires_at=None))
                if not won:
                    continue  # heartbeated or finished meanwhile
                metrics.LEASES_EXPIRED.inc()
                await self._after_failure(
                    s, job_id, now, f"lease expired: {worker} stopped heartbeating", None, True)
                taken += 1
        return taken

    async def retry(self, job_id: str, now: datetime) -> Job:
        """Run a failed job again from its first attempt (an operator resolved the incident)."""
        async with self.sessions() as s, s.begin():
            won = await self._write(s, update(Job).where(
                Job.job_id == job_id, Job.status == FAILED,
            ).values(status=QUEUED, attempts=0, available_at=now, finished_at=None,
                     lease_token=None))
            job = await s.get(Job, job_id, populate_existing=True)
            if job is None:
                raise NotFound(f"no job {job_id!r}", code="job_not_found")
            if not won:
                raise Conflict(f"job {job_id} is {job.status}; only failed jobs are retried",
                               code="job_not_failed", details={"status": job.status})
            await s.execute(update(Task).where(Task.task_id == job_id)
                            .values(incident=None, incident_at=None)
                            .execution_options(synchronize_session=False))
            s.add(self._log(job, now, LogEntry("queued again by an operator")))
            return job

    # --- helpers -----------------------------------------------------------------------------

    async def _after_failure(self, s: AsyncSession, job_id: str, now: datetime, error: str,
                             stack: str | None, retryable: bool) -> Job:
        job = await s.get(Job, job_id, populate_existing=True)
        assert job is not None
        job.error, job.error_stack = error[:4000], stack[:20000] if stack else None
        s.add(self._log(job, now, LogEntry(f"attempt {job.attempts} failed: {error}"[:4000],
                                           "ERROR")))
        if retryable and job.attempts < job.max_attempts:
            delay = backoff_delay(job.attempts, self.settings.backoff_base,
                                  self.settings.backoff_cap)
            job.status, job.lease_token = QUEUED, None
            job.available_at = now + timedelta(seconds=delay)
            metrics.JOBS.labels(job.kind, "retried").inc()
            return job
        job.status, job.finished_at = FAILED, now
        why = error if not retryable else f"{error} (after {job.attempts} attempts)"
        await automation.raise_incident(s, job.job_id, job.instance_id, job.step, why, now,
                                        event_id=f"hold:{job.job_id}/{job.attempts}")
        metrics.JOBS.labels(job.kind, "failed").inc()
        return job

    async def _hold(self, s: AsyncSession, job_id: str, token: str,
                    values: dict[str, Any]) -> None:
        """Write `values` if `token` holds the running job; else raise 404 or 409."""
        if await self._write(s, update(Job).where(
            Job.job_id == job_id, Job.status == RUNNING, Job.lease_token == token,
        ).values(**values)):
            return
        job = await s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", code="job_not_found")
        raise self._stale(job)

    @staticmethod
    def _stale(job: Job) -> Conflict:
        return Conflict(
            f"job {job.job_id} is not held with this lease (it is {job.status}, "
            f"attempt {job.attempts}): the lease expired or the job was finished",
            code="stale_lease", details={"status": job.status, "attempts": job.attempts},
        )

    @staticmethod
    async def _write(s: AsyncSession, stmt: Any) -> bool:
        result = await s.execute(stmt.execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def _log(job: Job, at: datetime, entry: LogEntry) -> JobLog:
        return JobLog(job_id=job.job_id, attempt=job.attempts, at=at, level=entry.level,
                      message=entry.message, entity_tag=entry.entity_tag,
                      entity_route=entry.entity_route, entity_id=entry.entity_id,
                      entity_type=entry.entity_type)
