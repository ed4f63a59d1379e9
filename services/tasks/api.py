"""The tasks service's HTTP API: inboxes, claim/release/complete, the journey, WIP.

Task ids are command ids (`instance/step/visit`) and contain slashes, hence `{task_id:path}`;
the action routes are declared first so `/v1/tasks/a/b/1/claim` reaches the claim handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import StepCompletion
from schemas.topics import COMPLETED_V1
from services.common import metrics as common_metrics
from services.common.errors import Conflict, FlowlineError, install_error_handlers
from services.common.http import FiniteJsonRoute
from services.common.settings import Settings
from services.tasks import analyses, analytics, assignment, routes_calendars, routes_jobs
from services.tasks.clock import Clock
from services.tasks.config import AutomationSettings
from services.tasks.metrics import TASK_ACTIONS
from services.tasks.service import TasksService
from services.tasks.store import TaskFilter
from services.tasks.views import instance_view, task_view


class Unavailable(FlowlineError):
    """The broker did not take the completion: retry later (the event id makes that safe)."""

    status = 503
    code = "unavailable"


class OperatorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator: str = Field(min_length=1, max_length=200)


class CompleteBody(OperatorBody):
    outcome: str | None = Field(default=None, min_length=1, max_length=200)
    measurements: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None


def _svc(request: Request) -> TasksService:
    svc: TasksService = request.app.state.tasks
    return svc


def create_app(settings: Settings, clock: Clock | None = None,
               automation: AutomationSettings | None = None) -> FastAPI:
    """The tasks app; its lifespan runs the database, the consumer, the producer, the task
    events publisher, the SLA sweeper and the automation (timers, HTTP steps, worker jobs).
    `clock` defaults to the system clock, `automation` to the environment's settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = TasksService(settings, clock, automation)
        await svc.start()
        app.state.tasks = svc
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(title="Flowline tasks", version="1", lifespan=lifespan)
    app.router.route_class = FiniteJsonRoute  # before any route is added
    install_error_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(analyses.router)
    app.include_router(routes_calendars.router)

    @app.get("/v1/tasks")
    async def list_tasks(
        request: Request, role: str | None = None, station: str | None = None,
        assignee: str | None = None, status: str | None = None, instance_id: str | None = None,
        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        f = TaskFilter(role, station, assignee, status, instance_id)
        rows, total = await _svc(request).store.list_tasks(f, limit, offset)
        return {"items": [task_view(t) for t in rows], "total": total}

    @app.post("/v1/tasks/{task_id:path}/claim")
    async def claim(request: Request, task_id: str, body: OperatorBody) -> dict[str, Any]:
        svc = _svc(request)
        store = svc.store
        assignment.check_claimable(await store.get_task(task_id), body.operator)
        if not await store.try_hold(task_id, body.operator, svc.clock.now()):
            # Lost a race: say why from the row as it is now.
            assignment.check_claimable(await store.get_task(task_id), body.operator)
            raise Conflict(f"task {task_id} changed while claiming", code="task_claimed")
        svc.publisher.kick()
        TASK_ACTIONS.labels("claim", "ok").inc()
        return task_view(await store.get_task(task_id))

    @app.post("/v1/tasks/{task_id:path}/release")
    async def release(request: Request, task_id: str, body: OperatorBody) -> dict[str, Any]:
        svc = _svc(request)
        store = svc.store
        task = await store.get_task(task_id)
        if not await store.try_release(task_id, body.operator, svc.clock.now()):
            raise Conflict(f"task {task_id} is {task.status}, not claimed by {body.operator}",
                           code="not_owner", details={"assignee": task.assignee})
        svc.publisher.kick()
        TASK_ACTIONS.labels("release", "ok").inc()
        return task_view(await store.get_task(task_id))

    @app.post("/v1/tasks/{task_id:path}/complete", status_code=202)
    async def complete(request: Request, task_id: str, body: CompleteBody) -> dict[str, Any]:
        svc = _svc(request)
        task = await svc.store.get_task(task_id)
        assignment.check_claimable(task, body.operator)  # completing an open task claims it
        assignment.check_outcome(task, body.outcome)
        if not await svc.store.try_hold(task_id, body.operator, svc.clock.now()):
            assignment.check_claimable(await svc.store.get_task(task_id), body.operator)
            raise Conflict(f"task {task_id} changed while completing", code="task_claimed")
        completion = StepCompletion(
            instance_id=task.instance_id, step=task.step, visit=task.visit,
            outcome=body.outcome, measurements=body.measurements, operator=body.operator,
            note=body.note,
        )
        # A deterministic id: a retried call produces a duplicate the router ignores.
        event_id = f"{task_id}/complete"
        try:
            await svc.producer.send(svc.settings.completions_topic, task.instance_id,
                                    COMPLETED_V1, completion.dump(), event_id=event_id)
        except Exception as exc:  # the task stays claimed by the operator, who can retry
            TASK_ACTIONS.labels("complete", "unavailable").inc()
            raise Unavailable(f"could not publish the completion: {exc}") from exc
        await svc.store.mark_completed(task_id, body.outcome, svc.clock.now(), body.operator)
        svc.publisher.kick()
        TASK_ACTIONS.labels("complete", "ok").inc()
        return {**task_view(await svc.store.get_task(task_id)), "event_id": event_id}

    @app.get("/v1/tasks/{task_id:path}")
    async def get_task(request: Request, task_id: str) -> dict[str, Any]:
        return task_view(await _svc(request).store.get_task(task_id))

    @app.get("/v1/instances")
    async def list_instances(
        request: Request, status: str | None = None, process: str | None = None,
        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
        work_order: str | None = None,
    ) -> dict[str, Any]:
        rows, total = await _svc(request).store.list_instances(status, process, limit, offset,
                                                               work_order)
        return {"items": [instance_view(r) for r in rows], "total": total}

    @app.get("/v1/instances/{instance_id:path}")
    async def get_instance(request: Request, instance_id: str) -> dict[str, Any]:
        row, visits = await _svc(request).store.get_instance(instance_id)
        return instance_view(row, visits)

    @app.get("/v1/analytics/flow")
    async def flow(request: Request, process: str | None = None,
                   since: datetime | None = None) -> dict[str, Any]:
        """First-pass yield, time and WIP per step, and the bottleneck ranking."""
        svc = _svc(request)
        async with svc.sessions() as session:
            return await analytics.flow(session, svc.clock.now(), process, since)

    @app.get("/v1/analytics/wip")
    async def wip(request: Request) -> dict[str, Any]:
        return await _svc(request).store.wip()

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        consuming = _svc(request).consumer.running
        return {"status": "ok" if consuming else "degraded", "service": "tasks",
                "consumer": "running" if consuming else "stopped"}

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = common_metrics.render()
        return Response(body, media_type=content_type)

    return app
