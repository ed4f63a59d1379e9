"""The worker loop: claim a job, run its handler in a thread, heartbeat, finish it.

While the handler runs, the worker heartbeats every third of the lease, shipping the step logs
and progress the handler reported (the heartbeat extends the lease). If the worker dies, the
heartbeats stop, the lease expires and the tasks service queues the job again; if the worker
learns it lost the lease (409), it drops the result: the job's new holder completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Sequence
from typing import Any

from services.workers.action_logger import ActionLogger
from services.workers.client import JobsClient, LeaseLost, Unavailable
from services.workers.registry import REGISTRY, HandlerError, JobContext, Registry, Result

log = logging.getLogger(__name__)


def default_name() -> str:
    return f"worker-{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Runs up to `concurrency` jobs of `handlers` (default: every registered one) at once."""

    def __init__(self, client: JobsClient, *, registry: Registry = REGISTRY,
                 handlers: Sequence[str] | None = None, name: str | None = None,
                 lease_s: float = 30.0, concurrency: int = 1,
                 idle_interval: float = 0.5) -> None:
        self.client, self.registry = client, registry
        self.handlers = list(handlers) if handlers else registry.names()
        for handler in self.handlers:
            registry.get(handler)  # fail at start, not at the first job
        if not self.handlers:
            raise ValueError("the worker has no handlers to run")
        self.name = name or default_name()
        self.lease_s, self.concurrency, self.idle_interval = lease_s, concurrency, idle_interval
        self.finished: list[tuple[str, str]] = []  # (job id, what happened), for logs and tests

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until `stop` is set; then finish the running ones."""
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        backoff = self.idle_interval
        log.info("%s running handlers %s", self.name, ", ".join(self.handlers))
        while not stop.is_set():
            await slots.acquire()
            try:
                claimed = await self.client.claim(self.name, self.handlers, self.lease_s)
                backoff = self.idle_interval
            except (Unavailable, ValueError) as exc:
                log.warning("%s: claim failed (%s); retrying in %.1fs", self.name, exc, backoff)
                claimed, backoff = None, min(backoff * 2, 10.0)
            if claimed is None:
                slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                continue
            task = asyncio.create_task(self._run_one(claimed, slots))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running, return_exceptions=True)

    async def _run_one(self, claimed: dict[str, Any], slots: asyncio.Semaphore) -> None:
        try:
            self.finished.append((claimed["job"]["job_id"], await self.run_job(claimed)))
        except Exception:  # never let one job take the loop down
            log.exception("%s: job %s", self.name, claimed["job"]["job_id"])
        finally:
            slots.release()

    async def run_job(self, claimed: dict[str, Any]) -> str:
        """Run one claimed job to its end; returns what happened (completed, failed, lost)."""
        job, token = claimed["job"], str(claimed["lease_token"])
        job_id = str(job["job_id"])
        inputs = job.get("input") or {}
        ctx = JobContext(
            job_id=job_id, instance_id=job["instance_id"], step=job["step"], visit=job["visit"],
            attempt=job["attempts"], context=inputs.get("context") or {},
            params=inputs.get("params") or {}, upstream=job.get("upstream") or {},
            subject=inputs.get("subject"),
        )
        logger = ActionLogger()
        logger.log_step(f"{job['handler']} started on {self.name} (attempt {job['attempts']})")
        try:
            fn = self.registry.get(str(job["handler"]))
            work = asyncio.ensure_future(asyncio.to_thread(fn, ctx, logger))
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.lease_s / 3)
                await self._ship(job_id, token, logger, heartbeat=not done)
                if done:
                    break
            result = work.result()
        except LeaseLost as lost:
            log.warning("%s: lost the lease of %s (%s); dropping its result", self.name, job_id,
                        lost)
            return "lost"
        except Exception as exc:
            return await self._fail(job_id, token, logger, exc)
        if isinstance(result, dict):
            result = Result(output=result)
        try:
            await self.client.complete(job_id, token, output=result.output,
                                       outcome=result.outcome,
                                       measurements=result.measurements,
                                       stats={**logger.stats, **result.stats})
        except LeaseLost:
            log.warning("%s: %s was taken back before it completed; result dropped", self.name,
                        job_id)
            return "lost"
        return "completed"

    async def _ship(self, job_id: str, token: str, logger: ActionLogger, heartbeat: bool) -> None:
        """Send the logs and progress gathered so far; extend the lease if still running."""
        entries, progress = logger.drain()
        if entries:
            await self.client.logs(job_id, token, entries)
        if progress is not None:
            await self.client.progress(job_id, token, self.lease_s, *progress)
        elif heartbeat:
            await self.client.heartbeat(job_id, token, self.lease_s)

    async def _fail(self, job_id: str, token: str, logger: ActionLogger, exc: Exception) -> str:
        retryable = exc.retryable if isinstance(exc, HandlerError) else True
        stack = getattr(exc, "stack", None) or "".join(traceback.format_exception(exc))
        error = str(exc) or type(exc).__name__
        with contextlib.suppress(LeaseLost):
            entries, _ = logger.drain()
            if entries:
                await self.client.logs(job_id, token, entries)
        try:
            await self.client.fail(job_id, token, f"{type(exc).__name__}: {error}", stack,
                                   retryable)
        except LeaseLost:
            return "lost"
        return "failed"
