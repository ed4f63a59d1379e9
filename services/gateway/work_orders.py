"""Work-order batches (seed 000 "batched advancement"): start or advance a lot in one request.

`POST /v1/work-orders/{work_order}/instances` with a `batch_id` and either
- `"action": "start"`: one instance per subject, id `<work_order>/<subject id>`, or
- `"action": "advance"`: complete `step` (with one outcome and measurements) for every
  instance of the work order that is at that step, or for the `instances` named.

Every record's CloudEvent id is `batch:<batch_id>:<instance>`. That is the guarantee: the
router applies an event id once, so the same batch sent again (a retry after a timeout, a
double click) changes nothing. The answer lists each instance's result: `started` /
`advanced` once the read model shows it (waiting up to `wait_s`), `accepted` when sent but not
yet seen, `rejected` with the reason when the read model already says it cannot apply (not at
the step, not running, exists). A repeated batch is answered from the first answer when this
gateway still holds it (`replayed: true`); the router's dedupe holds either way.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import Field, ValidationError, model_validator

from schemas.messages import Priority, StartInstance, StepCompletion, Subject
from schemas.topics import COMPLETED_V1, START_V1
from services.common.errors import Invalid
from services.common.http import FiniteJsonRoute
from services.gateway.intake import Intake, _Body, _invalid
from services.gateway.proxy import Peer

router = APIRouter(route_class=FiniteJsonRoute, tags=["work orders"])
REMEMBERED = 1000  # batch answers kept for replays
POLL = 0.1


class BatchBody(_Body):
    batch_id: str = Field(min_length=1, max_length=200)
    action: Literal["start", "advance"]
    # start
    process: str | None = Field(default=None, min_length=1)
    version: int | None = Field(default=None, ge=1)
    subjects: list[Subject] = Field(default_factory=list, max_length=5000)
    priority: Priority = Priority.MEDIUM
    context: dict[str, Any] = Field(default_factory=dict)
    # advance
    step: str | None = Field(default=None, min_length=1)
    outcome: str | None = None
    measurements: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = None
    equipment: str | None = None
    instances: list[str] | None = Field(default=None, max_length=5000)
    wait_s: float = Field(default=5.0, ge=0, le=30)

    @model_validator(mode="after")
    def _fits_action(self) -> BatchBody:
        if self.action == "start" and (not self.process or not self.subjects):
            raise ValueError("start needs process and subjects")
        if self.action == "advance" and not self.step:
            raise ValueError("advance needs step")
        return self


class WorkOrders:
    def __init__(self, peers: dict[str, Peer], intake: dict[str, Intake]) -> None:
        self.peers, self.intake = peers, intake
        self.answers: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()

    async def instance(self, iid: str, tenant: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.peers["tasks"].get_json(
            f"/v1/instances/{iid}", tenant=tenant)
        return found

    async def members(self, work_order: str, tenant: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self.peers["tasks"].get_json("/v1/instances", tenant=tenant, params={
                "work_order": work_order, "limit": 500, "offset": offset})
            batch = (page or {}).get("items", [])
            items += batch
            if len(batch) < 500:
                return items
            offset += 500

    async def send(self, topic: str, iid: str, ce_type: str, data: dict[str, Any],
                   event_id: str) -> None:
        intake = self.intake["kafka"]
        await intake._send(topic, iid, ce_type, data, event_id=event_id)

    async def start(self, work_order: str, body: BatchBody, tenant: str,
                    ) -> list[dict[str, Any]]:
        results, pending = [], {}
        settings = self.intake["kafka"].settings
        for subject in body.subjects:
            iid = f"{work_order}/{subject.id}"
            if await self.instance(iid, tenant) is not None:
                results.append({"instance_id": iid, "result": "rejected",
                                "reason": "instance_exists"})
                continue
            try:
                msg = StartInstance(instance_id=iid, tenant=tenant, process=body.process or "",
                                    version=body.version, subject=subject,
                                    work_order=work_order, priority=body.priority,
                                    context=body.context)
            except ValidationError as exc:
                raise _invalid(exc) from exc
            await self.send(settings.requests_topic, iid, START_V1, msg.dump(),
                            f"batch:{body.batch_id}:{iid}")
            pending[iid] = len(results)
            results.append({"instance_id": iid, "result": "accepted"})

        async def seen(iid: str) -> bool:
            return await self.instance(iid, tenant) is not None

        await self._confirm(results, pending, seen, "started", body.wait_s)
        return results

    async def advance(self, work_order: str, body: BatchBody, tenant: str,
                      ) -> list[dict[str, Any]]:
        step = body.step or ""
        settings = self.intake["kafka"].settings
        if body.instances is not None:
            rows = [await self.instance(i, tenant) or {"instance_id": i, "missing": True}
                    for i in body.instances]
        else:
            rows = await self.members(work_order, tenant)
        results, pending, visits = [], {}, {}
        for row in rows:
            iid = row["instance_id"]
            reason = _why_not(row, work_order, step)
            if reason:
                results.append({"instance_id": iid, "result": "rejected", "reason": reason})
                continue
            visit = (row.get("visits") or {}).get(step)
            try:
                msg = StepCompletion(instance_id=iid, step=step, visit=visit,
                                     outcome=body.outcome, measurements=body.measurements,
                                     operator=body.operator, equipment=body.equipment)
            except ValidationError as exc:
                raise _invalid(exc) from exc
            await self.send(settings.completions_topic, iid, COMPLETED_V1, msg.dump(),
                            f"batch:{body.batch_id}:{iid}")
            pending[iid], visits[iid] = len(results), visit
            results.append({"instance_id": iid, "result": "accepted", "visit": visit})

        async def moved(iid: str) -> bool:
            now = await self.instance(iid, tenant) or {}
            return step not in (now.get("active_steps") or []) or \
                (now.get("visits") or {}).get(step) != visits[iid]

        await self._confirm(results, pending, moved, "advanced", body.wait_s)
        return results

    async def _confirm(self, results: list[dict[str, Any]], pending: dict[str, int],
                       check: Any, done: str, wait_s: float) -> None:
        """Mark `done` what the read model shows within `wait_s`; the rest stays `accepted`."""
        deadline = time.monotonic() + wait_s
        while pending:
            for iid in list(pending):
                if await check(iid):
                    results[pending.pop(iid)]["result"] = done
            if not pending or time.monotonic() >= deadline:
                return
            await asyncio.sleep(POLL)


def _why_not(row: dict[str, Any], work_order: str, step: str) -> str | None:
    if row.get("missing"):
        return "unknown_instance"
    if row.get("work_order") != work_order:
        return f"not in work order {work_order}"
    if row.get("status") != "running":
        return f"instance is {row.get('status')}"
    if step not in (row.get("active_steps") or []):
        at = ", ".join(row.get("active_steps") or []) or "no step"
        return f"stale: at {at}, not {step}"
    return None


@router.post("/v1/work-orders/{work_order}/instances")
async def batch(request: Request, body: BatchBody,
                work_order: str = Path(min_length=1, max_length=200)) -> dict[str, Any]:
    """Start or advance the instances of a work order in one request; `batch_id` dedupes."""
    ops: WorkOrders = request.app.state.work_orders
    tenant = request.headers.get("X-Flowline-Tenant", "default")
    key = (tenant, work_order, body.batch_id)
    if key in ops.answers:
        return {**ops.answers[key], "replayed": True}
    if "/" in work_order:
        raise Invalid("a work order id cannot contain '/'", code="invalid_request")
    results = await (ops.start if body.action == "start" else ops.advance)(
        work_order, body, tenant)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    answer = {"work_order": work_order, "batch_id": body.batch_id, "action": body.action,
              "counts": counts, "results": results, "replayed": False}
    ops.answers[key] = answer
    while len(ops.answers) > REMEMBERED:
        ops.answers.popitem(last=False)
    return answer
