"""HTTP and webhook steps, run by the tasks service itself: httpx for the call, tenacity for
the retries (exponential backoff, 2**n s capped at 60 s by default, then an incident).

The runner is a worker like any other: it claims http/webhook jobs with a lease, records each
attempt, and extends the lease over each backoff wait. If the service stops mid-job, the lease
expires, the scheduler queues the job again and a runner resumes the attempt count where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from services.common.errors import FlowlineError
from services.tasks.actions import (
    HTTP,
    WEBHOOK,
    HttpCall,
    InvalidAction,
    backoff_delay,
    http_call,
    parse_action,
    result_of,
    retryable_status,
)
from services.tasks.clock import Clock
from services.tasks.config import AutomationSettings
from services.tasks.jobs import JobStore, Lease

log = logging.getLogger(__name__)

WORKER = "tasks-http"
LEASE_MARGIN = 5.0  # seconds of lease beyond the request timeout


class StepFailed(Exception):
    """One attempt failed; `retryable` says whether another could succeed."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class HttpRunner:
    """Claims ready http/webhook jobs and runs up to `http_concurrency` of them at once."""

    def __init__(self, jobs: JobStore, clock: Clock, settings: AutomationSettings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.jobs, self.clock, self.settings = jobs, clock, settings
        self._client = httpx.AsyncClient(follow_redirects=False, transport=transport)
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Look for ready jobs now (a command just created one)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.start_ready()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a locked or lost database: try again next round
                    log.exception("http runner: claiming jobs failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.scheduler_interval)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await self._client.aclose()

    async def start_ready(self) -> int:
        """Claim ready jobs while there is capacity; returns how many were started."""
        started = 0
        while len(self._running) < self.settings.http_concurrency:
            lease = await self.jobs.claim(WORKER, self.clock.now(), self._lease(),
                                          kinds=(HTTP, WEBHOOK))
            if lease is None:
                break
            task = asyncio.create_task(self._run_job(lease), name=f"http-job-{lease.job.job_id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started += 1
        return started

    def _lease(self, timeout: float | None = None) -> float:
        return (timeout or self.settings.http_timeout) + LEASE_MARGIN

    async def _run_job(self, lease: Lease) -> None:
        job, token = lease.job, lease.token
        try:
            action = parse_action(job.action)
            if action is None:
                raise InvalidAction(f"{job.action!r} is not an http or webhook action")
            call = http_call(action, job.input, self.settings.http_timeout)
        except InvalidAction as exc:
            await self.jobs.fail(job.job_id, token, self.clock.now(), f"invalid action: {exc}",
                                 retryable=False)
            return
        done_before = job.attempts - 1  # a restarted job resumes its count (and its backoff)
        lease_s = self._lease(call.timeout)
        try:  # the action's own timeout may be longer than the lease the claim took
            await self.jobs.heartbeat(job.job_id, token, self.clock.now(), lease_s)
        except FlowlineError as exc:
            log.info("http job %s: %s", job.job_id, exc.message)
            return

        def wait(state: RetryCallState) -> float:
            return backoff_delay(done_before + state.attempt_number, self.settings.backoff_base,
                                 self.settings.backoff_cap)

        async def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            await self.jobs.attempt_failed(job.job_id, token, self.clock.now(), str(error),
                                           wait(state), lease_s)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, job.max_attempts - done_before)),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, StepFailed) and e.retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        await self.jobs.next_attempt(job.job_id, token, self.clock.now(),
                                                     lease_s)
                    status, payload = await self._call(call)
            outcome, measurements = result_of(action, status, payload)
            await self.jobs.complete(job.job_id, token, self.clock.now(), outcome=outcome,
                                     output=measurements)
        except (StepFailed, InvalidAction) as exc:
            retryable = isinstance(exc, StepFailed) and exc.retryable
            await self.jobs.fail(job.job_id, token, self.clock.now(), str(exc),
                                 retryable=retryable)
        except FlowlineError as exc:  # the lease was lost: the step was retired meanwhile
            log.info("http job %s: %s", job.job_id, exc.message)

    async def _call(self, call: HttpCall) -> tuple[int, Any]:
        where = f"{call.method} {call.url}"
        try:
            answer = await self._client.request(
                call.method, call.url, headers=call.headers, timeout=call.timeout,
                json=call.json_body if call.json_body is not None else None,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise StepFailed(f"{where}: {exc}", retryable=False) from exc
        except httpx.TimeoutException as exc:
            raise StepFailed(f"{where}: no answer within {call.timeout:g}s",
                             retryable=True) from exc
        except httpx.HTTPError as exc:
            raise StepFailed(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if answer.status_code >= 400:
            raise StepFailed(f"{where} answered {answer.status_code}: {answer.text[:300]}",
                             retryable=retryable_status(answer.status_code))
        if not answer.content:
            return answer.status_code, None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text[:4000]
