"""The instance-migration rule (`schemas/migration.py`): what maps onto another version."""

from __future__ import annotations

from typing import Any

from schemas.graph import ProcessVersion
from schemas.migration import plan_migration
from tests.unit.graphs import reman


def version(n: int, graph: dict[str, Any] | None = None, **fields: Any) -> ProcessVersion:
    return ProcessVersion.model_validate({**(graph or reman()), "version": n, **fields})


def without(graph: dict[str, Any], step: str, *, rename: str | None = None) -> dict[str, Any]:
    """The graph with `step` removed, or renamed to `rename` (edges follow)."""
    def fix(s: str) -> str:
        return rename if (rename and s == step) else s
    steps = [({**s, "id": fix(s["id"])}) for s in graph["steps"] if rename or s["id"] != step]
    edges = [{**e, "from": fix(e["from"]), "to": fix(e["to"])} for e in graph["edges"]
             if rename or step not in (e["from"], e["to"])]
    return {**graph, "steps": steps, "edges": edges}


def test_same_shape_maps_and_keeps_visits() -> None:
    plan = plan_migration({"inspect": 2}, {"receive": 1, "inspect": 2, "rework": 1},
                          version(1), version(2))
    assert plan.ok and plan.problems == [] and plan.notes == []
    assert (plan.from_version, plan.to_version) == (1, 2)
    assert plan.active == {"inspect": 2}
    assert plan.visits == {"receive": 1, "inspect": 2, "rework": 1}


def test_an_active_step_missing_in_the_target_is_a_problem_unless_mapped() -> None:
    renamed = version(2, without(reman(), "clean", rename="wash"))
    plan = plan_migration({"clean": 1}, {"clean": 1}, version(1), renamed)
    assert not plan.ok and "'clean' is not in v2; map it with step_map" in plan.problems[0]
    mapped = plan_migration({"clean": 1}, {"clean": 1}, version(1), renamed, {"clean": "wash"})
    assert mapped.ok and mapped.active == {"wash": 1} and mapped.visits == {"wash": 1}


def test_dropped_steps_and_exhausted_counts_are_notes() -> None:
    plan = plan_migration({"inspect": 3}, {"inspect": 3, "rework": 3, "clean": 1},
                          version(1), version(2, reman(max_rework=2)))
    assert plan.ok
    assert any("'rework' has 3 visits, max_visits 2" in n for n in plan.notes)
    dropped = plan_migration({"inspect": 1}, {"inspect": 1, "disassemble": 1}, version(1),
                             version(2, without(reman(), "disassemble")))
    assert dropped.ok and dropped.visits == {"inspect": 1}
    assert dropped.notes == ["visits of 'disassemble' (1) are dropped: v2 has no such step"]


def test_target_must_be_approved_same_process_and_waiting_step() -> None:
    paused = plan_migration({"inspect": 1}, {}, version(1), version(2, status="paused"))
    assert not paused.ok and "v2 is paused" in paused.problems[0]
    other = plan_migration({"inspect": 1}, {}, version(1), version(2, key="other"))
    assert not other.ok and "another process" in other.problems[0]
    graph = reman()
    graph["steps"] = [{**s, "type": "terminal", "terminal_status": "completed"}
                      if s["id"] == "ship" else s for s in graph["steps"]]
    ended = plan_migration({"ship": 1}, {"ship": 1}, version(1), version(2, graph))
    assert not ended.ok and "is a terminal step in v2" in ended.problems[0]
    bad_map = plan_migration({"inspect": 1}, {}, version(1), version(2), {"nope": "x"})
    assert not bad_map.ok and "step_map names steps v1 does not have: nope" in bad_map.problems
