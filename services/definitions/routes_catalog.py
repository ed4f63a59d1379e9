"""Finding and starting processes: category matching and the shipped templates.

``GET /v1/processes/match`` is declared on its own router, included before the ``/{key}``
routes, so "match" is a path here and never read as a process key (the key is reserved).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field

from services.common.errors import NotFound
from services.common.http import FiniteJsonRoute
from services.definitions import catalog, templates
from services.definitions.graph_input import parse_graph
from services.definitions.matching import best_match
from services.definitions.routes import NAME, Rt, Tenant

match_router = APIRouter(route_class=FiniteJsonRoute, prefix="/v1/processes", tags=["processes"])
templates_router = APIRouter(route_class=FiniteJsonRoute, prefix="/v1/templates",
                             tags=["templates"])

Field200 = Annotated[str, Query(min_length=1, max_length=200)]


@match_router.get("/match")
async def match(rt: Rt, t: Tenant, department: Field200, category: Field200,
                sub_category: Annotated[str | None, Query(max_length=200)] = None,
                ) -> dict[str, Any]:
    """The process for a ticket: department and category exact, sub_category preferred."""
    sub = sub_category or None  # `?sub_category=` means "none given"
    found = best_match(await catalog.approved_candidates(rt.repo, t), department, category, sub)
    if found is None:
        raise NotFound(f"no approved process for department {department!r}, category "
                       f"{category!r}" + (f", sub_category {sub!r}" if sub else "")
                       + "; approve one with these fields or resume a paused one",
                       code="no_matching_process",
                       details={"department": department, "category": category,
                                "sub_category": sub})
    c = found.candidate
    return {"key": c.key, "version": c.version, "name": c.graph.get("name"),
            "department": department, "category": category,
            "sub_category": c.graph.get("sub_category"),
            "match": "exact" if found.exact else "general"}


class InstallBody(BaseModel):
    key: str | None = Field(default=None, min_length=1, max_length=120, pattern=NAME)


@templates_router.get("")
async def list_templates() -> list[dict[str, Any]]:
    """The shipped templates with the metadata a picker shows."""
    out = []
    for name in templates.list_templates():
        graph = templates.load_template(name)
        out.append({"name": name, "key": graph["key"], "title": graph.get("name"),
                    "description": graph.get("description"),
                    "category": graph.get("category"),
                    "sub_category": graph.get("sub_category"),
                    "department": graph.get("department"), "steps": len(graph["steps"])})
    return out


@templates_router.post("/{name}/install", status_code=201)
async def install(name: Annotated[str, Path(max_length=120, pattern=NAME)], rt: Rt, t: Tenant,
                  body: Annotated[InstallBody | None, Body()] = None) -> dict[str, Any]:
    """A new draft from template ``name`` (under ``key`` when given); 409 if the key exists."""
    try:
        graph_json = templates.load_template(name)
    except KeyError:
        raise NotFound(f"no template {name!r}; GET /v1/templates lists them",
                       code="template_not_found") from None
    if body is not None and body.key is not None:
        graph_json = {**graph_json, "key": body.key}
    graph, _ = parse_graph({**graph_json, "tenant": t})
    row = await rt.repo.install(t, graph, copied_from=f"template:{name}")
    return {"key": row.key, "tenant": t, "status": "draft", "template": name,
            "copied_from": row.copied_from}
