"""Graph JSON as a designer sends it: temporary node ids mapped to stable step ids.

A visual designer creates nodes before they have ids, so (as in seed 001) a step may carry a
``temp_id`` instead of an ``id`` and an edge ``from_temp_id`` / ``to_temp_id`` instead of
``from`` / ``to``. Each such step gets a stable id: the slug of its name (``"Final QA"`` ->
``final_qa``), made unique with ``_2``, ``_3``... Steps that already have an id keep it, and
their ids are reserved first, so re-sending a saved graph with a few new nodes never renames
an existing step. Everything else in the JSON, design coordinates included, passes through.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import ValidationError

from schemas.graph import ProcessGraph
from services.common.errors import Invalid
from services.definitions import seed001

MAX_ID = 200  # Step.id's limit


def slug(text: str) -> str:
    """``"Final QA (v2)"`` -> ``final_qa_v2``: lower case ASCII letters, digits and ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:MAX_ID - 10]


def resolve_temp_ids(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``body`` with temporary ids replaced by stable ones, and the ``{temp_id: id}`` map.

    Raises Invalid (422) for a duplicated temp_id, an edge naming an unknown temp_id, or an
    edge that names both ends of one side (``from`` and ``from_temp_id``) differently.
    """
    steps, edges = body.get("steps"), body.get("edges")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return body, {}  # not ours to judge: model validation reports the shape
    ids = _assign(steps)
    out = {**body, "steps": [_step(s, ids) for s in steps]}
    if isinstance(edges, list):
        out["edges"] = [_edge(e, ids, i) if isinstance(e, dict) else e
                        for i, e in enumerate(edges)]
    return out, ids


def _assign(steps: list[dict[str, Any]]) -> dict[str, str]:
    taken = {s["id"] for s in steps if isinstance(s.get("id"), str)}
    ids: dict[str, str] = {}
    for i, step in enumerate(steps):
        temp = step.get("temp_id")
        if temp is None:
            continue
        if not isinstance(temp, str | int) or isinstance(temp, bool) or str(temp) == "":
            raise Invalid(f"steps[{i}].temp_id must be a non-empty string",
                          code="temp_id_invalid", details={"step": i})
        temp = str(temp)
        if temp in ids:
            raise Invalid(f"temp_id {temp!r} is used by more than one step",
                          code="temp_id_duplicate", details={"temp_id": temp})
        if isinstance(step.get("id"), str):  # an id given alongside wins: it is already stable
            ids[temp] = step["id"]
            continue
        name = step.get("name")
        base = slug(name if isinstance(name, str) else "") or slug(temp) or "step"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        ids[temp] = candidate
    return ids


def _step(step: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    temp = step.get("temp_id")
    if temp is None:
        return step
    rest = {k: v for k, v in step.items() if k != "temp_id"}
    return {"id": ids[str(temp)], **rest}


def _edge(edge: dict[str, Any], ids: dict[str, str], index: int) -> dict[str, Any]:
    out = dict(edge)
    for end in ("from", "to"):
        temp = out.pop(f"{end}_temp_id", None)
        if temp is None:
            continue
        if str(temp) not in ids:
            raise Invalid(f"edges[{index}].{end}_temp_id {temp!r} names no step's temp_id",
                          code="temp_id_unknown", details={"edge": index, "temp_id": temp})
        resolved = ids[str(temp)]
        if out.get(end) not in (None, resolved):
            raise Invalid(f"edges[{index}] names {end}={out[end]!r} and {end}_temp_id={temp!r}, "
                          f"which is step {resolved!r}; send one of them",
                          code="temp_id_conflict", details={"edge": index})
        out[end] = resolved
    return out


def parse_graph(body: dict[str, Any]) -> tuple[ProcessGraph, dict[str, str]]:
    """Resolve temporary ids, then validate the model; 422 ``invalid_request`` on bad shape.

    Seed 001's ``{"workflow", "graph": {"nodes", "edges"}}`` body is translated first.
    """
    if seed001.is_seed001(body):
        body = seed001.translate(body, slug)
    resolved, ids = resolve_temp_ids(body)
    try:
        return ProcessGraph.model_validate(resolved), ids
    except ValidationError as exc:
        details = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                   for e in exc.errors()]
        raise Invalid("request body is invalid", code="invalid_request",
                      details=details) from exc
