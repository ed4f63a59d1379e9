"""Designer routes under ``/v1/processes/{key}``: partial draft edits, history, diff, export.

``PUT .../details`` changes metadata only and ``PUT .../graph`` steps and edges only (seed
001's update-details / update-graph), so a metadata form and the visual editor never overwrite
each other's work. ``export`` answers the graph JSON ``POST /v1/processes`` takes back.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from schemas.graph import ProcessGraph, Slas
from services.common.http import FiniteJsonRoute
from services.definitions import catalog
from services.definitions.diff import diff_graphs, is_empty
from services.definitions.graph_input import parse_graph, resolve_temp_ids
from services.definitions.routes import KeyPath, Rt, Tenant

router = APIRouter(route_class=FiniteJsonRoute, prefix="/v1/processes", tags=["processes"])

LABEL = r"^(draft|[1-9][0-9]{0,9})$"
# Not the graph's own: they describe a stored version, and a tenant in an export would make
# it import only into the tenant it came from.
_NOT_EXPORTED = ("tenant", "version", "status", "approved_at", "copied_from")


class EndAction(BaseModel):
    """What to do when an instance ends (seed 001 end logic): notification, asset, budget..."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1, max_length=60)


class DetailsBody(BaseModel):
    """Metadata of a draft; fields left out keep their value, ``null`` clears one."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    category: str | None = Field(default=None, max_length=200)
    sub_category: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    slas: Slas | None = None
    end_actions: list[EndAction] | None = None


class GraphBody(BaseModel):
    """Steps and edges of a draft, replaced as a whole; temp ids as in ``POST``."""

    model_config = ConfigDict(extra="forbid")
    steps: list[dict[str, Any]]
    edges: list[dict[str, Any]] = []


def _label(text: str | None) -> catalog.Label | None:
    if text is None or text == catalog.DRAFT:
        return text
    return int(text)


LabelQuery = Annotated[str | None, Query(pattern=LABEL, description="a version or 'draft'")]


@router.put("/{key}/details")
async def update_details(key: KeyPath, body: DetailsBody, rt: Rt, t: Tenant) -> dict[str, Any]:
    changes = body.model_dump(mode="json", include=body.model_fields_set)
    row = await rt.repo.patch_draft(
        t, key, lambda g: parse_graph({**g.dump(), **changes})[0])
    return {"key": key, "status": "draft", "graph": row.draft}


@router.put("/{key}/graph")
async def update_graph(key: KeyPath, body: GraphBody, rt: Rt, t: Tenant) -> dict[str, Any]:
    resolved, ids = resolve_temp_ids(body.model_dump())

    def replace(graph: ProcessGraph) -> ProcessGraph:
        return parse_graph({**graph.dump(), "steps": resolved["steps"],
                            "edges": resolved["edges"]})[0]

    row = await rt.repo.patch_draft(t, key, replace)
    return {"key": key, "status": "draft", "graph": row.draft, "ids": ids}


@router.get("/{key}/versions")
async def list_versions(key: KeyPath, rt: Rt, t: Tenant) -> list[dict[str, Any]]:
    """Version history, oldest first: ``{version, status, approved_at, copied_from, name}``."""
    return await catalog.history(rt.repo, t, key)


@router.get("/{key}/diff")
async def diff(key: KeyPath, rt: Rt, t: Tenant,
               from_: Annotated[str, Query(alias="from", pattern=LABEL)],
               to: Annotated[str, Query(pattern=LABEL)]) -> dict[str, Any]:
    """What changes from one version (or the draft) to another."""
    old_label, old = await catalog.graph_at(rt.repo, t, key, _label(from_))
    new_label, new = await catalog.graph_at(rt.repo, t, key, _label(to))
    changes = diff_graphs(old, new)
    return {"key": key, "from": old_label, "to": new_label, "identical": is_empty(changes),
            **changes}


@router.get("/{key}/export")
async def export(key: KeyPath, rt: Rt, t: Tenant, version: LabelQuery = None) -> JSONResponse:
    """The graph JSON of a version (latest by default) or the draft, ready to POST back."""
    label, graph = await catalog.graph_at(rt.repo, t, key, _label(version))
    body = {k: v for k, v in graph.items() if k not in _NOT_EXPORTED}
    name = f"{key}-{'draft' if label == catalog.DRAFT else f'v{label}'}.json"
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}"'})
