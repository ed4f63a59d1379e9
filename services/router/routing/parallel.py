"""Parallel splits and joins: which branch each waiting step is on, and when a join fires.

Entering a `parallel` step opens a *split visit*, keyed `"<split>/<visit>"`, with one branch per
outgoing default edge (a branch is named by that edge's target), and sends a token down each.
A token carries its `Lane` (split visit + branch) wherever it goes in the branch, through rework
loops, escalations and decisions; `InstanceState.lanes` keeps it while the token waits at a step.

A branch *arrives* when its token enters a `join`, and *ends* when it enters a `completed`
terminal (BPMN's plain end event: that branch is done, the others go on; any other terminal
ends the whole instance, see decide.py). The join fires once, when every branch of the split
visit has arrived or ended and at least one arrived; the merged token leaves on the join's
default edge in the lane the split was entered on, so splits nest. When every branch ended, the
split visit is over and counts as ended in its own outer lane.

Counting is per split visit: a branch arriving twice counts once, and a loop that passes the
split again opens a new split visit with a fresh join.

A migration (decide.py, `schemas.migration`) renames lanes and split visits through its
`step_map` (`rename`); a split visit keeps its visit number, as the split step keeps its count.

Parallel sections are expected to be block-structured. What the core cannot route safely it
reports here, and decide.py holds the instance with the reason: branches of one split visit
gathering at two different joins, a join reached outside any split, a branch looping back into
its own split before its join.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.router.routing.state import InstanceState, Lane, SplitVisit


@dataclass(frozen=True)
class Fire:
    """A join fires: leave `join` (its visit `visit`) on its default edge, on lane `lane`."""

    join: str
    visit: int
    lane: Lane | None


def open_split(state: InstanceState, split: str, visit: int, branches: list[str],
               outer: Lane | None) -> list[Lane]:
    """Record a new split visit; the lanes of its branches, in edge order."""
    key = f"{split}/{visit}"
    state.splits[key] = SplitVisit(step=split, branches=list(branches), arrived=[], ended=[],
                                   join=None, join_visit=None, outer=outer)
    return [Lane(split=key, branch=b) for b in branches]


def loop_problem(state: InstanceState, lane: Lane | None, split: str) -> str | None:
    """Why entering `split` on `lane` cannot be routed: the lane is already inside that split."""
    while lane is not None:
        visit = state.splits.get(lane["split"])
        if visit is None:
            return None
        if visit["step"] == split:
            return (f"branch {lane['branch']} of {lane['split']} loops back into {split} "
                    "before its join: a parallel section must be joined before it repeats")
        lane = visit["outer"]
    return None


def join_problem(state: InstanceState, lane: Lane | None, join: str) -> str | None:
    """Why a token on `lane` cannot arrive at `join`, or None."""
    if lane is None:
        return f"join {join} was reached outside any parallel split"
    visit = state.splits.get(lane["split"])
    if visit is None:
        return f"join {join}: split visit {lane['split']} is not open"
    if visit["join"] not in (None, join):
        return (f"the branches of {lane['split']} gather at two joins ({visit['join']} and "
                f"{join}): a split's branches must meet at one join")
    return None


def gathering(state: InstanceState, lane: Lane, join: str) -> bool:
    """True when another branch of this split visit already entered `join` (its visit counted)."""
    return state.splits[lane["split"]]["join"] == join


def start_gathering(state: InstanceState, lane: Lane, join: str, visit: int) -> None:
    split_visit = state.splits[lane["split"]]
    split_visit["join"], split_visit["join_visit"] = join, visit


def arrive(state: InstanceState, lane: Lane) -> Fire | None:
    """The branch on `lane` reached the join; the Fire when it was the last one missing."""
    arrived = state.splits[lane["split"]]["arrived"]
    if lane["branch"] not in arrived:
        arrived.append(lane["branch"])
    return _settle(state, lane["split"])


def end(state: InstanceState, lane: Lane | None) -> Fire | None:
    """The branch on `lane` ended at a `completed` terminal; a Fire if a join can now go on."""
    if lane is None or lane["split"] not in state.splits:
        return None
    ended = state.splits[lane["split"]]["ended"]
    if lane["branch"] not in ended:
        ended.append(lane["branch"])
    return _settle(state, lane["split"])


def rename(state: InstanceState, step_map: dict[str, str]) -> None:
    """Carry lanes and split visits over to steps renamed by a migration's `step_map`."""
    def step(s: str) -> str:
        return step_map.get(s, s)

    def key(k: str) -> str:
        split, visit = k.rsplit("/", 1)
        return f"{step(split)}/{visit}"

    def lane(old: Lane | None) -> Lane | None:
        return None if old is None else Lane(split=key(old["split"]), branch=step(old["branch"]))

    state.lanes = {step(s): Lane(split=key(v["split"]), branch=step(v["branch"]))
                   for s, v in state.lanes.items()}
    state.splits = {
        key(k): SplitVisit(step=step(v["step"]), branches=[step(b) for b in v["branches"]],
                           arrived=[step(b) for b in v["arrived"]],
                           ended=[step(b) for b in v["ended"]],
                           join=step(v["join"]) if v["join"] else None,
                           join_visit=v["join_visit"], outer=lane(v["outer"]))
        for k, v in state.splits.items()}


def _settle(state: InstanceState, key: str) -> Fire | None:
    visit = state.splits[key]
    if any(b not in visit["arrived"] and b not in visit["ended"] for b in visit["branches"]):
        return None
    del state.splits[key]
    if not visit["arrived"]:  # every branch ended: so did the split visit, in its outer lane
        return end(state, visit["outer"])
    assert visit["join"] is not None and visit["join_visit"] is not None
    return Fire(visit["join"], visit["join_visit"], visit["outer"])
