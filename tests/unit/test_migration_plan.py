"""The instance-migration rule (`schemas/migration.py`): what maps onto another version."""

from __future__ import annotations

from typing import Any

from schemas.graph import ProcessVersion
from schemas.migration import plan_migration
from tests.unit.flows import DONE, START, process, task
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


# --- parallel blocks and children ---------------------------------------------------------------

LANES = {"a": {"split": "split/1", "branch": "a"}, "b": {"split": "split/1", "branch": "b"}}
SPLITS = {"split/1": {"step": "split", "branches": ["a", "b"], "arrived": [], "ended": [],
                      "join": None, "join_visit": None, "outer": None}}


def par(n: int, steps: list[dict[str, Any]], edges: list[Any]) -> ProcessVersion:
    return version(n, process("par", [START, DONE, *steps], edges))


def block(*, branches: tuple[str, ...] = ("a", "b"), join: str = "join",
          split_type: str = "parallel", extra: tuple[Any, ...] = ()) -> list[Any]:
    """[steps, edges] of start -> split -> branches -> join -> after -> done."""
    steps = [{"id": "split", "type": split_type}, {"id": join, "type": "join"}, task("after"),
             *(task(b) for b in branches)]
    edges = [("start", "split"), *(("split", b) for b in branches),
             *((b, join) for b in branches), (join, "after"), ("after", "done"), *extra]
    return [steps, edges]


def test_a_split_that_keeps_its_shape_maps_with_renamed_branches() -> None:
    steps, edges = block(branches=("a", "b2"))
    v2 = par(2, [*steps, task("label")], [*edges, ("label", "done")])
    plan = plan_migration({"a": 1, "b": 1}, {"split": 1, "a": 1, "b": 1}, par(1, *block()), v2,
                          {"b": "b2"}, lanes=LANES, splits=SPLITS)
    assert plan.ok, plan.problems
    assert plan.active == {"a": 1, "b2": 1}


def test_a_removed_branch_is_named() -> None:
    plan = plan_migration({"a": 1, "b": 1}, {}, par(1, *block()), par(2, *block(branches=("a",))),
                          lanes=LANES, splits=SPLITS)
    assert not plan.ok
    assert "split 'split' has branches {a, b} in v1 but {a} in v2" in plan.problems


def test_a_split_turned_into_a_plain_step_is_named() -> None:
    plan = plan_migration({"a": 1, "b": 1}, {}, par(1, *block()),
                          par(2, *block(split_type="task")), lanes=LANES, splits=SPLITS)
    assert plan.problems == ["split 'split' is a task step in v2, not a parallel split"]


def test_a_renamed_join_must_be_mapped() -> None:
    v2 = par(2, *block(join="merge"))
    plan = plan_migration({"a": 1, "b": 1}, {}, par(1, *block()), v2, lanes=LANES,
                          splits=SPLITS)
    assert plan.problems == ["split 'split' joins at join in v1 but at merge in v2"]
    mapped = plan_migration({"a": 1, "b": 1}, {}, par(1, *block()), v2, {"join": "merge"},
                            lanes=LANES, splits=SPLITS)
    assert mapped.ok


def test_an_active_step_the_join_moved_past_is_named() -> None:
    # v1: split -> a -> join, split -> b -> c -> join; v2 joins before c: join -> c -> after.
    v1 = par(1, [{"id": "split", "type": "parallel"}, {"id": "join", "type": "join"},
                 task("a"), task("b"), task("c"), task("after")],
             [("start", "split"), ("split", "a"), ("split", "b"), ("a", "join"), ("b", "c"),
              ("c", "join"), ("join", "after"), ("after", "done")])
    v2 = par(2, [{"id": "split", "type": "parallel"}, {"id": "join", "type": "join"},
                 task("a"), task("b"), task("c"), task("after")],
             [("start", "split"), ("split", "a"), ("split", "b"), ("a", "join"), ("b", "join"),
              ("join", "c"), ("c", "after"), ("after", "done")])
    lanes = {"a": LANES["a"], "c": LANES["b"]}
    plan = plan_migration({"a": 1, "c": 1}, {}, v1, v2, lanes=lanes, splits=SPLITS)
    assert plan.problems == ["active step 'c' is on branch b of split 'split' in v1 but not "
                             "between 'split' and its join on branch b in v2"]


def test_a_step_waiting_on_a_child_keeps_its_id_and_process() -> None:
    def sub(runs: str, step_id: str = "sub") -> ProcessVersion:
        return version(2, process("par", [START, DONE, {"id": step_id, "type": "subprocess",
                                                        "subprocess": {"process": runs}}],
                                  [("start", step_id), (step_id, "done")]))
    v1 = version(1, sub("clean").model_dump(by_alias=True))
    assert plan_migration({"sub": 1}, {"sub": 1}, v1, sub("clean")).ok
    other = plan_migration({"sub": 1}, {}, v1, sub("wash"))
    assert other.problems == ["active step 'sub' waits on a child of 'clean', but starts "
                              "'wash' in v2"]
    moved = plan_migration({"sub": 1}, {}, v1, sub("clean", "run"), {"sub": "run"})
    assert moved.problems == ["active step 'sub' waits on a child, which will complete it by "
                              "that id: it cannot be renamed to 'run'"]
    to_task = version(2, process("par", [START, DONE, task("sub")],
                                 [("start", "sub"), ("sub", "done")]))
    assert "is a task step in v2" in plan_migration({"sub": 1}, {}, v1, to_task).problems[0]
    assert "no child was started" in plan_migration({"sub": 1}, {}, to_task, v1).problems[0]
