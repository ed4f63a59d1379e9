"""Seed 001's request shape, taken literally: ``{"workflow": {...}, "graph": {"nodes", "edges"}}``.

Service-desk designers built workflows as ``POST /workflows/`` with metadata in ``workflow``
(``low_sla`` .. ``urgent_sla``, ``end_logic``) and nodes flagged ``is_start`` / ``is_end``
with numeric ``role_id``s. ``POST /v1/processes`` accepts that body as it is and translates it
to the graph JSON of DESIGN §4:

- ``is_start`` node: a ``start`` step is added before it (start steps are pass-through
  markers in Flowline, not work); ``is_end`` nodes get a default edge to one added
  ``terminal`` step, so finishing the last task ends the instance;
- ``role_id: 2`` becomes ``role: "role-2"`` (an explicit ``role`` wins);
- ``x_sla`` become ``slas.x``; ``end_logic`` becomes ``end_actions: [{"type": ...}]``;
- the key is ``workflow.key`` or the slug of the name; everything else passes through, so
  ``temp_id`` / ``from_temp_id`` are then resolved like any designer's graph.
"""

from __future__ import annotations

from typing import Any

from services.common.errors import Invalid

PRIORITIES = ("urgent", "high", "medium", "low")
START, END = "start", "end"


def is_seed001(body: dict[str, Any]) -> bool:
    return isinstance(body.get("workflow"), dict) and isinstance(body.get("graph"), dict) \
        and "steps" not in body


def translate(body: dict[str, Any], slug: Any) -> dict[str, Any]:
    workflow, graph = body["workflow"], body["graph"]
    nodes, edges = graph.get("nodes", []), graph.get("edges", [])
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise Invalid("graph.nodes must be a list of objects", code="invalid_request")
    if not isinstance(edges, list) or not all(isinstance(e, dict) for e in edges):
        raise Invalid("graph.edges must be a list of objects", code="invalid_request")
    starts = [n for n in nodes if n.get("is_start")]
    if len(starts) > 1:
        raise Invalid(f"{len(starts)} nodes have is_start; a workflow has one",
                      code="invalid_request", details={"nodes": [_ref(n) for n in starts]})
    out: dict[str, Any] = {k: v for k, v in workflow.items()
                           if not k.endswith("_sla") and k != "end_logic"}
    out.setdefault("key", slug(str(workflow.get("name") or "")) or "workflow")
    slas = {p: workflow[f"{p}_sla"] for p in PRIORITIES if workflow.get(f"{p}_sla")}
    if slas:
        out["slas"] = slas
    end_logic = workflow.get("end_logic")
    if end_logic:
        kinds = end_logic if isinstance(end_logic, list) else [end_logic]
        out["end_actions"] = [k if isinstance(k, dict) else {"type": str(k)} for k in kinds]
    steps = [_step(n) for n in nodes]
    new_edges = [dict(e) for e in edges]
    taken = {s.get("id") for s in steps} | {s.get("temp_id") for s in steps}
    start_id, end_id = _free(START, taken), _free(END, taken)
    if starts:
        steps.insert(0, {"id": start_id, "type": "start"})
        new_edges.insert(0, {"from": start_id, **_end_ref(starts[0], "to")})
    ends = [n for n in nodes if n.get("is_end")]
    if ends:
        steps.append({"id": end_id, "type": "terminal", "terminal_status": "completed"})
        new_edges += [{**_end_ref(n, "from"), "to": end_id} for n in ends]
    out["steps"], out["edges"] = steps, new_edges
    return out


def _step(node: dict[str, Any]) -> dict[str, Any]:
    step = {k: v for k, v in node.items() if k not in ("is_start", "is_end", "role_id")}
    role_id = node.get("role_id")
    if role_id is not None and "role" not in node:
        step["role"] = f"role-{role_id}"
    return step


def _end_ref(node: dict[str, Any], end: str) -> dict[str, Any]:
    if node.get("id") is not None:
        return {end: node["id"]}
    return {f"{end}_temp_id": node.get("temp_id")}


def _ref(node: dict[str, Any]) -> Any:
    return node.get("id", node.get("temp_id", node.get("name")))


def _free(base: str, taken: set[Any]) -> str:
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate
