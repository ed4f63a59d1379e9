"""`/v1/calendars/{tenant}`: a tenant's business calendar for SLA due times (seed 001).

With a calendar, a task's due time is its SLA (the process SLA for the priority × the step
weight, computed by the router) counted in working time: see `services/tasks/calendar.py`.
Tasks created before a change keep their due time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response

from services.common.errors import Invalid, NotFound
from services.common.http import FiniteJsonRoute
from services.tasks.calendar import BusinessCalendar, CalendarError
from services.tasks.models import Calendar
from services.tasks.service import TasksService

router = APIRouter(route_class=FiniteJsonRoute, tags=["calendars"])
TenantPath = Annotated[str, Path(min_length=1, max_length=100)]
EXAMPLE = {"timezone": "Europe/Berlin",
           "hours": {d: ["08:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu",
                                                               "fri")},
           "holidays": ["2026-12-25", "2026-12-26"]}


def _svc(request: Request) -> TasksService:
    svc: TasksService = request.app.state.tasks
    return svc


@router.put("/v1/calendars/{tenant}")
async def put_calendar(request: Request, tenant: TenantPath,
                       body: Annotated[dict[str, Any], Body(examples=[EXAMPLE])],
                       ) -> dict[str, Any]:
    try:
        calendar = BusinessCalendar.from_json(body)
    except CalendarError as exc:
        raise Invalid(str(exc), code="invalid_calendar") from exc
    svc = _svc(request)
    async with svc.sessions.begin() as session:
        row = await session.get(Calendar, tenant)
        if row is None:
            session.add(Calendar(tenant=tenant, spec=calendar.to_json(),
                                 updated_at=svc.clock.now()))
        else:
            row.spec, row.updated_at = calendar.to_json(), svc.clock.now()
    return {"tenant": tenant, **calendar.to_json()}


@router.get("/v1/calendars/{tenant}")
async def get_calendar(request: Request, tenant: TenantPath) -> dict[str, Any]:
    async with _svc(request).sessions() as session:
        row = await session.get(Calendar, tenant)
    if row is None:
        raise NotFound(f"tenant {tenant!r} has no calendar: SLAs run on wall-clock time",
                       code="no_calendar")
    return {"tenant": tenant, **row.spec}


@router.delete("/v1/calendars/{tenant}", status_code=204)
async def delete_calendar(request: Request, tenant: TenantPath) -> Response:
    async with _svc(request).sessions.begin() as session:
        row = await session.get(Calendar, tenant)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no calendar", code="no_calendar")
        await session.delete(row)
    return Response(status_code=204)
