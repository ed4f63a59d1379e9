"""Does a running instance fit another version of its process? The rule of instance migration.

Part of the contract because two sides must agree on it: the router applies a migration with
it, and the gateway answers dry runs with it from the journey read model, before anything is
sent. Pure: a function of the instance's active steps and visit table and the two versions.

An instance maps onto the target version when every active step (renamed through `step_map`
where a step got a new id) exists there and still waits for a completion (task, decision,
rework, automated, timer). Visit counts move with their steps; counts of steps the target
lacks are dropped (a note, not a problem); a count at or above the target step's
`max_visits` is kept and noted: the next entry will escalate.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.graph import ProcessVersion, StepType

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
                   target: ProcessVersion, step_map: dict[str, str] | None = None
                   ) -> MigrationPlan:
    rename = dict(step_map or {})
    steps = {s.id: s for s in target.steps}
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
        else:
            new_active[to] = visit
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
