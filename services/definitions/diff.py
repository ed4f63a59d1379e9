"""What changed between two graphs: metadata fields, steps and edges added, removed, changed.

Pure: works on the stored graph JSON (both sides written by ``ProcessGraph.dump()``, so
defaults are spelled out alike and a field only differs when its value does). Steps are matched
by id; edges by ``(from, to, type)`` -- the n-th such edge on one side with the n-th on the
other -- so renaming a transition is a change, while re-pointing an edge is a removal plus an
addition, which is what it means to routing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# Fields of a version rather than of its graph: they differ between any two versions.
_NOT_GRAPH = frozenset({"key", "tenant", "version", "status", "approved_at", "copied_from"})

Json = dict[str, Any]


def diff_graphs(old: Json, new: Json) -> Json:
    """``{metadata: {field: {from, to}}, steps: {added, removed, changed}, edges: {...}}``."""
    meta_old = {k: v for k, v in old.items() if k not in _NOT_GRAPH | {"steps", "edges"}}
    meta_new = {k: v for k, v in new.items() if k not in _NOT_GRAPH | {"steps", "edges"}}
    steps = _match(_by_id(old.get("steps", [])), _by_id(new.get("steps", [])))
    edges = _match(_by_ends(old.get("edges", [])), _by_ends(new.get("edges", [])))
    return {
        "metadata": changed_fields(meta_old, meta_new),
        "steps": {
            "added": steps["added"],
            "removed": steps["removed"],
            "changed": [{"id": key, "fields": fields} for key, fields in steps["changed"]],
        },
        "edges": {
            "added": edges["added"],
            "removed": edges["removed"],
            "changed": [{"from": k[0], "to": k[1], "type": k[2], "fields": fields}
                        for k, fields in edges["changed"]],
        },
    }


def changed_fields(old: Json, new: Json) -> Json:
    """``{field: {"from": old value, "to": new value}}`` for every field that differs."""
    return {k: {"from": old.get(k), "to": new.get(k)}
            for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def is_empty(diff: Json) -> bool:
    """True when the two graphs are the same."""
    return not diff["metadata"] and not any(
        part[kind] for part in (diff["steps"], diff["edges"])
        for kind in ("added", "removed", "changed"))


def _by_id(steps: list[Json]) -> dict[Any, Json]:
    out: dict[Any, Json] = {}
    for step in steps:
        out.setdefault(step.get("id"), step)  # a duplicated id is a validation finding
    return out


def _by_ends(edges: list[Json]) -> dict[Any, Json]:
    seen: Counter[tuple[str, str, str]] = Counter()
    out: dict[Any, Json] = {}
    for edge in edges:
        ends = (edge.get("from", ""), edge.get("to", ""), edge.get("type", "default"))
        out[(*ends, seen[ends])] = edge
        seen[ends] += 1
    return out


def _match(old: dict[Any, Json], new: dict[Any, Json]) -> dict[str, Any]:
    return {
        "added": [new[k] for k in new if k not in old],
        "removed": [old[k] for k in old if k not in new],
        "changed": [(k, fields) for k in old if k in new
                    if (fields := changed_fields(old[k], new[k]))],
    }
