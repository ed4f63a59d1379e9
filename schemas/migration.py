"""Does a running instance fit another version of its process? The rule of instance migration.

Part of the contract because two sides must agree on it: the router applies a migration with
it, and the gateway answers dry runs with it from the journey read model, before anything is
sent. Pure: a function of the instance's active steps and visit table and the two versions.

An instance maps onto the target version when every active step (renamed through `step_map`
where a step got a new id) exists there and still waits for a completion (task, decision,
rework, automated, timer). Visit counts move with their steps; counts of steps the target
lacks are dropped (a note, not a problem); a count at or above the target step's
`max_visits` is kept and noted: the next entry will escalate.

A step waiting on a child (`subprocess`) must stay a subprocess step of the same process under
the same id: the child keeps running, and its completion and the parent's cancel address the
step by the id and visit it was started with (`ParentRef`, the child's id), so a renamed step
would never hear from its child. A step that was not waiting on a child cannot become one: no
child was started for it.

An instance inside parallel blocks also passes its `lanes` and `splits` (the router's state,
see services/router/routing/parallel.py). It maps when every open split visit keeps its shape,
names renamed through `step_map`: the split is still a parallel split with the same branches,
its branches still meet at the same join, and each active step (and each nested split) still
lies on its branch, between the split and that join. Each mismatch is named as a problem. The
gateway's dry run passes the lanes and splits the journey read model keeps from the router's
events (`InstanceEvent.parallel`); a caller without them gets the check of active steps and
visits only, and the router still checks the blocks when it applies the migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.graph import EdgeType, ProcessVersion, Step, StepType

WAITING = {StepType.TASK, StepType.DECISION, StepType.REWORK, StepType.AUTOMATED,
           StepType.TIMER, StepType.SUBPROCESS}


class MigrationPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    from_version: int
    to_version: int
    active: dict[str, int] = Field(default_factory=dict)  # in the target's step ids
    visits: dict[str, int] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)  # why it cannot migrate
    notes: list[str] = Field(default_factory=list)  # what changes if it does


def plan_migration(active: dict[str, int], visits: dict[str, int], source: ProcessVersion,
                   target: ProcessVersion, step_map: dict[str, str] | None = None, *,
                   lanes: Mapping[str, Mapping[str, Any]] | None = None,
                   splits: Mapping[str, Mapping[str, Any]] | None = None) -> MigrationPlan:
    rename = dict(step_map or {})
    steps = {s.id: s for s in target.steps}
    before = {s.id: s for s in source.steps}
    problems: list[str] = []
    notes: list[str] = []
    if source.key != target.key or source.tenant != target.tenant:
        problems.append(f"{target.tenant}/{target.key} is another process than "
                        f"{source.tenant}/{source.key}")
    if target.status != "approved":
        problems.append(f"v{target.version} is {target.status}; only an approved version "
                        "takes instances")
    unknown = sorted(set(rename) - {s.id for s in source.steps})
    if unknown:
        problems.append(f"step_map names steps v{source.version} does not have: "
                        + ", ".join(unknown))
    new_active: dict[str, int] = {}
    for step_id, visit in sorted(active.items()):
        to = rename.get(step_id, step_id)
        step = steps.get(to)
        if step is None:
            problems.append(f"active step {step_id!r} is not in v{target.version}"
                            + ("" if step_id in rename else "; map it with step_map"))
        elif step.type not in WAITING:
            problems.append(f"active step {step_id!r} is a {step.type.value} step in "
                            f"v{target.version}, which does not wait for a completion")
        elif problem := _child_problem(before.get(step_id), step_id, step, target.version):
            problems.append(problem)
        else:
            new_active[to] = visit
    if splits or lanes:
        problems += _block_problems(dict(lanes or {}), dict(splits or {}), rename, source,
                                    target)
    new_visits: dict[str, int] = {}
    for step_id, count in sorted(visits.items()):
        to = rename.get(step_id, step_id)
        step = steps.get(to)
        if step is None:
            notes.append(f"visits of {step_id!r} ({count}) are dropped: v{target.version} "
                         "has no such step")
            continue
        new_visits[to] = new_visits.get(to, 0) + count
        if step.max_visits is not None and new_visits[to] >= step.max_visits:
            notes.append(f"{to!r} has {new_visits[to]} visits, max_visits "
                         f"{step.max_visits} in v{target.version}: its next entry escalates")
    for to, visit in new_active.items():
        new_visits[to] = max(new_visits.get(to, 0), visit)
    return MigrationPlan(ok=not problems, from_version=source.version,
                         to_version=target.version, active=new_active, visits=new_visits,
                         problems=problems, notes=notes)



def _child_problem(old: Step | None, step_id: str, new: Step, version: int) -> str | None:
    """Why the active `step_id` (`old` in the source) cannot become `new`, as to its child."""
    was = old is not None and old.type == StepType.SUBPROCESS
    if not was and new.type == StepType.SUBPROCESS:
        return (f"active step {step_id!r} becomes a subprocess step in v{version}, but no "
                "child was started for it")
    if not was:
        return None
    assert old is not None
    if new.type != StepType.SUBPROCESS:
        return (f"active step {step_id!r} waits on a child, but is a {new.type.value} step in "
                f"v{version}")
    if new.id != step_id:
        return (f"active step {step_id!r} waits on a child, which will complete it by that id: "
                f"it cannot be renamed to {new.id!r}")
    before = old.subprocess.process if old.subprocess else None
    after = new.subprocess.process if new.subprocess else None
    if before != after:
        return (f"active step {step_id!r} waits on a child of {before!r}, but starts "
                f"{after!r} in v{version}")
    return None


class _Blocks:
    """One version's parallel blocks: a split's branches, its join, the steps on a branch.

    A branch is every step reachable from the branch's first step before the split's own join;
    a nested split's join is passed through (depth counts the splits entered on the way).
    """

    def __init__(self, version: ProcessVersion) -> None:
        self.steps = {s.id: s for s in version.steps}
        self.edges = [(e.from_, e.to, e.type) for e in version.edges]

    def is_split(self, step: str) -> bool:
        found = self.steps.get(step)
        return found is not None and found.type == StepType.PARALLEL

    def branches(self, split: str) -> list[str]:
        return [to for frm, to, kind in self.edges if frm == split and kind == EdgeType.DEFAULT]

    def branch(self, first: str) -> tuple[set[str], set[str]]:
        """The steps on the branch starting at `first`, and the joins that close it."""
        on: set[str] = set()
        joins: set[str] = set()
        seen: set[tuple[str, int]] = set()
        todo = [(first, 0)]
        while todo:
            step, depth = todo.pop()
            if (step, depth) in seen or depth > len(self.steps):
                continue
            seen.add((step, depth))
            found = self.steps.get(step)
            kind = found.type if found else None
            if kind == StepType.JOIN:
                if depth == 0:
                    joins.add(step)
                    continue
                depth -= 1
            on.add(step)
            if kind == StepType.PARALLEL:
                depth += 1
            todo += [(to, depth) for frm, to, _ in self.edges if frm == step]
        return on, joins

    def join(self, split: str) -> str | None:
        """The one join every joined branch of `split` meets at, or None."""
        joins: set[str] = set()
        for first in self.branches(split):
            joins |= self.branch(first)[1]
        return joins.pop() if len(joins) == 1 else None


def _block_problems(lanes: dict[str, Mapping[str, Any]], splits: dict[str, Mapping[str, Any]],
                    rename: dict[str, str], source: ProcessVersion, target: ProcessVersion
                    ) -> list[str]:
    """What of the open split visits does not map onto `target` (see the module docstring)."""
    old, new = _Blocks(source), _Blocks(target)
    v1, v2 = f"v{source.version}", f"v{target.version}"

    def names(steps: list[str]) -> str:
        return "{" + ", ".join(sorted(steps)) + "}"

    # What lies on each branch: active steps, and nested splits on their outer lane.
    placed: dict[str, list[tuple[str, str, str]]] = {}  # split visit -> (what, step, branch)
    for step, lane in sorted(lanes.items()):
        placed.setdefault(lane["split"], []).append(("active step", step, lane["branch"]))
    for _key, visit in sorted(splits.items()):
        if visit.get("outer"):
            outer = visit["outer"]
            placed.setdefault(outer["split"], []).append(("split", visit["step"],
                                                          outer["branch"]))
    problems = [f"{what} {step!r} is on split visit {key}, which is not open"
                for key in sorted(set(placed) - set(splits)) for what, step, _ in placed[key]]
    for key, visit in sorted(splits.items()):
        split = visit["step"]
        to = rename.get(split, split)
        if to not in new.steps:
            problems.append(f"split {split!r} is not in {v2}"
                            + ("" if split in rename else "; map it with step_map"))
            continue
        if not new.is_split(to):
            problems.append(f"split {split!r} is a {new.steps[to].type.value} step in {v2}, "
                            "not a parallel split")
            continue
        branches = [rename.get(b, b) for b in visit["branches"]]
        if set(branches) != set(new.branches(to)):
            problems.append(f"split {split!r} has branches {names(visit['branches'])} in {v1} "
                            f"but {names(new.branches(to))} in {v2}")
            continue
        joined = visit.get("join") or old.join(split)
        there = new.join(to)
        if (rename.get(joined, joined) if joined else None) != there:
            problems.append(f"split {split!r} joins at {joined or 'no single join'} in {v1} "
                            f"but at {there or 'no single join'} in {v2}")
            continue
        for what, step, branch in placed.get(key, []):
            first = rename.get(branch, branch)
            if rename.get(step, step) not in new.branch(first)[0]:
                problems.append(f"{what} {step!r} is on branch {branch} of split {split!r} in "
                                f"{v1} but not between {to!r} and its join on branch {first} "
                                f"in {v2}")
    return problems
