"""HTTP routes under ``/v1/processes``: drafts, validation, approval, lifecycle, versions.

The gateway proxies these paths unchanged, so they are part of the public contract (DESIGN §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field

from schemas.graph import ProcessGraph
from services.common.errors import Invalid
from services.common.http import FiniteJsonRoute
from services.definitions import metrics
from services.definitions.findings import has_errors
from services.definitions.graph_input import parse_graph
from services.definitions.publisher import OutboxPublisher
from services.definitions.repository import Repository, as_utc, to_process_version
from services.definitions.validation import validate

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
KeyPath = Annotated[str, Path(min_length=1, max_length=120, pattern=NAME)]
VersionQuery = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
TenantHeader = Annotated[
    str, Header(alias="X-Flowline-Tenant", min_length=1, max_length=120, pattern=NAME)
]


@dataclass
class Runtime:
    """What the routes need, built in the app's lifespan."""

    repo: Repository
    publisher: OutboxPublisher
    publish_wait: float


class DuplicateBody(BaseModel):
    new_key: str = Field(min_length=1, max_length=120, pattern=NAME)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def tenant(x_flowline_tenant: TenantHeader = "default") -> str:
    return x_flowline_tenant


Rt = Annotated[Runtime, Depends(runtime)]
Tenant = Annotated[str, Depends(tenant)]
router = APIRouter(route_class=FiniteJsonRoute, prefix="/v1/processes", tags=["processes"])


def _own(graph: ProcessGraph, tenant: str) -> ProcessGraph:
    # The header decides the tenant; a body that names another one is a mistake, not a switch.
    if "tenant" in graph.model_fields_set and graph.tenant != tenant:
        raise Invalid(f"graph tenant {graph.tenant!r} differs from request tenant {tenant!r}",
                      code="tenant_mismatch")
    return graph.model_copy(update={"tenant": tenant})


GraphBody = Annotated[dict[str, Any], Body(
    description="Graph JSON (DESIGN §4). Steps may carry `temp_id` instead of `id`, edges "
                "`from_temp_id`/`to_temp_id` instead of `from`/`to`; the answer's `ids` maps "
                "each temp_id to the stable step id it was given.",
    openapi_examples={"temp_ids": {"summary": "new nodes from a designer", "value": {
        "key": "it-support", "steps": [
            {"temp_id": "n1", "type": "start", "design": {"x": 0, "y": 0}},
            {"temp_id": "n2", "name": "Triage", "role": "agent", "design": {"x": 100, "y": 0}},
            {"temp_id": "n3", "type": "terminal", "name": "Done"}],
        "edges": [{"from_temp_id": "n1", "to_temp_id": "n2"},
                  {"from_temp_id": "n2", "to_temp_id": "n3", "name": "Complete"}]}}},
)]


@router.post("", status_code=201)
async def create(body: GraphBody, rt: Rt, t: Tenant) -> dict[str, Any]:
    graph, ids = parse_graph(body)
    row = await rt.repo.create_draft(t, _own(graph, t))
    return {"key": row.key, "tenant": t, "status": "draft", "ids": ids}


@router.put("/{key}")
async def update(key: KeyPath, body: GraphBody, rt: Rt, t: Tenant) -> dict[str, Any]:
    graph, ids = parse_graph(body)
    if graph.key != key:
        raise Invalid(f"body key {graph.key!r} differs from path key {key!r}",
                      code="key_mismatch")
    row = await rt.repo.update_draft(t, key, _own(graph, t))
    return {"key": key, "status": "draft", "graph": row.draft, "ids": ids}


@router.get("")
async def list_processes(rt: Rt, t: Tenant) -> list[dict[str, Any]]:
    out = []
    for process, latest in await rt.repo.list_processes(t):
        name = (process.draft or (latest.graph if latest else {})).get("name")
        out.append({"key": process.key, "name": name, "tenant": t,
                    "draft": process.draft is not None,
                    "latest_version": latest.version if latest else None,
                    "status": latest.status if latest else "draft"})
    return out


@router.get("/{key}")
async def get_process(key: KeyPath, rt: Rt, t: Tenant) -> dict[str, Any]:
    process, versions = await rt.repo.get(t, key)
    return {"key": key, "tenant": t, "draft": process.draft, "copied_from": process.copied_from,
            "versions": [{"version": v.version, "status": v.status,
                          "approved_at": as_utc(v.approved_at).isoformat(),
                          "copied_from": v.copied_from} for v in versions]}


@router.post("/{key}/validate")
async def validate_draft(key: KeyPath, rt: Rt, t: Tenant) -> dict[str, Any]:
    findings = validate(await rt.repo.draft_graph(t, key))
    return {"valid": not has_errors(findings), "findings": [f.as_dict() for f in findings]}


@router.post("/{key}/approve")
async def approve(key: KeyPath, rt: Rt, t: Tenant) -> dict[str, Any]:
    row, outbox_id = await rt.repo.approve(t, key)
    metrics.APPROVALS.inc()
    # Wait (bounded) so a caller that starts an instance next usually finds the version on
    # the topic; if the broker is away the outbox keeps the event and the answer is the same.
    published = await rt.publisher.wait_published(outbox_id, within=rt.publish_wait)
    return {"key": key, "version": row.version, "published": published}


async def _transition(key: str, action: str, version: int | None, rt: Runtime,
                      t: str) -> dict[str, Any]:
    row, outbox_id = await rt.repo.transition(t, key, action, version)
    metrics.TRANSITIONS.labels(action).inc()
    published = await rt.publisher.wait_published(outbox_id, within=rt.publish_wait)
    return {"key": key, "version": row.version, "status": row.status, "published": published}


@router.post("/{key}/pause")
async def pause(key: KeyPath, rt: Rt, t: Tenant, version: VersionQuery = None) -> dict[str, Any]:
    return await _transition(key, "pause", version, rt, t)


@router.post("/{key}/resume")
async def resume(key: KeyPath, rt: Rt, t: Tenant, version: VersionQuery = None) -> dict[str, Any]:
    return await _transition(key, "resume", version, rt, t)


@router.post("/{key}/deprecate")
async def deprecate(key: KeyPath, rt: Rt, t: Tenant,
                    version: VersionQuery = None) -> dict[str, Any]:
    return await _transition(key, "deprecate", version, rt, t)


@router.post("/{key}/duplicate", status_code=201)
async def duplicate(key: KeyPath, body: DuplicateBody, rt: Rt, t: Tenant,
                    version: VersionQuery = None) -> dict[str, Any]:
    row = await rt.repo.duplicate(t, key, body.new_key, version)
    return {"key": row.key, "tenant": t, "status": "draft", "copied_from": row.copied_from,
            "graph": row.draft}


@router.get("/{key}/versions/{version}")
async def get_version(key: KeyPath, version: Annotated[int, Path(ge=1, le=2**31 - 1)], rt: Rt,
                      t: Tenant) -> dict[str, Any]:
    return to_process_version(await rt.repo.get_version(t, key, version)).dump()
