"""Instance migration over HTTP: one instance or a filtered batch, with a dry run.

The plan comes from `schemas.migration.plan_migration`, the same rule the router applies, fed
from the journey read model (active steps, visit table, and inside parallel blocks the lanes
and split visits the router's events carry as `parallel`) and the two process versions from
the definitions service. A dry run only answers the plan; otherwise instances whose plan is ok get
a `flowline.instance.migrate.v1` request, and the router checks again against its own state
(the read model may trail it by a moment) before it moves anything.

A batch carries a `batch_id`: each request's event id is `migrate:<batch_id>:<instance>`, so
sending the same batch again changes nothing (the router sees duplicates).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, ValidationError

from schemas.graph import ProcessVersion
from schemas.messages import ControlInstance, InstanceAction
from schemas.migration import MigrationPlan, plan_migration
from schemas.topics import MIGRATE_V1
from services.common.errors import Conflict, Invalid, NotFound
from services.common.http import FiniteJsonRoute
from services.gateway.intake import Intake, _Body
from services.gateway.proxy import Peer

router = APIRouter(route_class=FiniteJsonRoute, tags=["instances"])
MIGRATABLE = ("running", "on_hold")
PAGE = 500


class MigrateBody(_Body):
    to_version: int = Field(ge=1)
    step_map: dict[str, str] = Field(default_factory=dict)
    dry_run: bool = False
    reason: str | None = Field(default=None, max_length=2000)
    operator: str | None = Field(default=None, max_length=200)


class BatchMigrateBody(MigrateBody):
    process: str = Field(min_length=1)
    from_version: int | None = Field(default=None, ge=1)
    batch_id: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=10_000, ge=1, le=100_000)


class Migrations:
    def __init__(self, peers: dict[str, Peer], intake: dict[str, Intake]) -> None:
        self.peers, self.intake = peers, intake
        self._versions: dict[tuple[str, str, int], ProcessVersion] = {}

    async def version(self, tenant: str, key: str, n: int) -> ProcessVersion | None:
        cached = self._versions.get((tenant, key, n))
        if cached is not None and cached.status == "approved":
            return cached
        answer = await self.peers["definitions"].get_json(
            f"/v1/processes/{key}/versions/{n}", tenant=tenant)
        if answer is None:
            return None
        version = ProcessVersion.model_validate(answer)
        self._versions[(tenant, key, n)] = version
        return version

    async def plan(self, instance: dict[str, Any], body: MigrateBody,
                   tenant: str) -> MigrationPlan:
        process = instance.get("process") or {}
        key, current = process.get("key"), process.get("version")
        if not key or not current:
            raise Conflict(f"instance {instance['instance_id']} has no known process version yet",
                           code="not_migratable")
        source = await self.version(tenant, key, current)
        target = await self.version(tenant, key, body.to_version)
        if source is None or target is None:
            missing = current if source is None else body.to_version
            raise NotFound(f"process {key!r} has no version {missing}", code="no_such_version",
                           details={"process": key, "version": missing})
        visits: dict[str, int] = instance.get("visits") or {}
        active = {step: visits.get(step, 1) for step in instance.get("active_steps") or []}
        parallel = instance.get("parallel") or {}  # the router's lanes and splits, if any
        plan = plan_migration(active, visits, source, target, body.step_map or None,
                              lanes=parallel.get("lanes"), splits=parallel.get("splits"))
        if instance.get("status") not in MIGRATABLE:
            plan = plan.model_copy(update={"ok": False, "problems": [
                f"instance is {instance.get('status')}", *plan.problems]})
        return plan

    async def send(self, instance_id: str, body: MigrateBody, event_id: str | None) -> str:
        try:
            msg = ControlInstance(instance_id=instance_id, action=InstanceAction.MIGRATE,
                                  to_version=body.to_version, step_map=body.step_map or None,
                                  reason=body.reason, operator=body.operator)
        except ValidationError as exc:
            raise Invalid("request body is invalid", code="invalid_request") from exc
        intake = self.intake["kafka"]
        return await intake._send(intake.settings.requests_topic, instance_id, MIGRATE_V1,
                                  msg.dump(), event_id=event_id)

    async def instances(self, body: BatchMigrateBody, tenant: str) -> list[dict[str, Any]]:
        """Every migratable instance of the process (and version), read before anything moves."""
        found: list[dict[str, Any]] = []
        offset = 0
        while len(found) < body.limit:
            page = await self.peers["tasks"].get_json("/v1/instances", tenant=tenant, params={
                "process": body.process, "status": ",".join(MIGRATABLE), "limit": PAGE,
                "offset": offset})
            items = (page or {}).get("items", [])
            found += [i for i in items if body.from_version is None
                      or (i.get("process") or {}).get("version") == body.from_version]
            if len(items) < PAGE:
                break
            offset += PAGE
        return found[:body.limit]


def _tenant(request: Request) -> str:
    return request.headers.get("X-Flowline-Tenant", "default")


def _ops(request: Request) -> Migrations:
    ops: Migrations = request.app.state.migrations
    return ops


@router.post("/v1/instances/{instance_id:path}/migrate")
async def migrate_instance(instance_id: str, body: MigrateBody, request: Request,
                           ) -> dict[str, Any]:
    """Move a running instance to another version of its process; `dry_run` only plans."""
    ops, tenant = _ops(request), _tenant(request)
    instance = await ops.peers["tasks"].get_json(f"/v1/instances/{instance_id}", tenant=tenant)
    if instance is None:
        raise NotFound(f"no instance {instance_id}", code="unknown_instance")
    plan = await ops.plan(instance, body, tenant)
    out: dict[str, Any] = {"instance_id": instance_id, "dry_run": body.dry_run,
                           "plan": plan.model_dump()}
    if body.dry_run:
        return out
    if not plan.ok:
        raise Conflict(f"the instance does not fit v{body.to_version}: "
                       + "; ".join(plan.problems), code="not_migratable",
                       details={"plan": plan.model_dump()})
    out["event_id"] = await ops.send(instance_id, body, None)
    return out


@router.post("/v1/migrations")
async def migrate_batch(body: BatchMigrateBody, request: Request) -> dict[str, Any]:
    """Plan (and unless `dry_run`, request) the migration of every matching instance."""
    ops, tenant = _ops(request), _tenant(request)
    if not body.dry_run and body.batch_id is None:
        raise Invalid("a batch migration needs a batch_id (it makes a retry safe)",
                      code="batch_id_required")
    results = []
    for instance in await ops.instances(body, tenant):
        iid = instance["instance_id"]
        try:
            plan = await ops.plan(instance, body, tenant)
        except (Conflict, NotFound) as exc:
            results.append({"instance_id": iid, "result": "refused", "problems": [str(exc)]})
            continue
        entry: dict[str, Any] = {"instance_id": iid, "from_version": plan.from_version,
                                 "active": plan.active, "notes": plan.notes}
        if not plan.ok:
            entry.update(result="refused", problems=plan.problems)
        elif body.dry_run:
            entry["result"] = "would_migrate"
        else:
            await ops.send(iid, body, f"migrate:{body.batch_id}:{iid}")
            entry["result"] = "requested"
        results.append(entry)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    return {"process": body.process, "to_version": body.to_version, "dry_run": body.dry_run,
            "batch_id": body.batch_id, "counts": counts, "results": results}
