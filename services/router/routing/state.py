"""The state the router keeps per instance: what `decide` reads and returns.

Stored as a plain JSON dict in the router's changelog-backed table, so it must round-trip through
`to_dict`/`from_dict` exactly. Fields added later have defaults, so states stored before them
still load.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict

RUNNING = "running"
ON_HOLD = "on_hold"
COMPLETED = "completed"
CANCELLED = "cancelled"

RECENT_EVENT_IDS = 16  # duplicates further back are caught as stale: their step is long gone


class Lane(TypedDict):
    """The parallel branch a token runs on: split visit `"<split>/<visit>"` and branch name."""

    split: str
    branch: str  # the target of the split's outgoing edge the branch started on


class SplitVisit(TypedDict):
    """One visit of a parallel split: its branches and how far each has got (see parallel.py)."""

    step: str  # the split step
    branches: list[str]  # in edge order
    arrived: list[str]  # branches waiting at the join
    ended: list[str]  # branches that ended at a `completed` terminal
    join: str | None  # the join the branches gather at, once the first arrives
    join_visit: int | None
    outer: Lane | None  # the lane the split itself was entered on: splits nest


class Deferred(TypedDict):
    """A child's completion of a held parent's subprocess step, kept until the parent resumes."""

    event_id: str  # its CloudEvent id: the source of the events it causes at the resume
    completion: dict[str, Any]  # the `StepCompletion`, as `dump()` gives it


class Pending(TypedDict):
    """A token a routing hold interrupted, retried by the resume (see decide.py).

    `leave` false: enter `step` for `reason` on `lane`, as when the hold was raised. `leave`
    true: `step` (a start or a join that fired) was entered already; leave it by its default
    edge, entering the next step for `reason`.
    """

    step: str
    reason: str
    lane: Lane | None
    leave: bool


@dataclass
class InstanceState:
    instance_id: str
    tenant: str
    process_key: str
    version: int
    subject: dict[str, str]
    priority: str = "medium"
    work_order: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    status: str = RUNNING
    terminal_status: str | None = None
    hold_reason: str | None = None
    active: dict[str, int] = field(default_factory=dict)  # step -> the visit it is in
    visits: dict[str, int] = field(default_factory=dict)  # step -> times entered
    operators: dict[str, list[str | None]] = field(default_factory=dict)  # step -> per visit
    recent_event_ids: list[str] = field(default_factory=list)
    started_at: str = ""
    updated_at: str = ""
    # {"instance_id", "step", "visit"}: the parent step this child instance completes when it ends
    parent: dict[str, Any] | None = None
    lanes: dict[str, Lane] = field(default_factory=dict)  # active step -> its parallel branch
    splits: dict[str, SplitVisit] = field(default_factory=dict)  # "split/visit" -> progress
    deferred: list[Deferred] = field(default_factory=list)  # in arrival order; only while held
    pending: list[Pending] = field(default_factory=list)  # held tokens, in order; only while held

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceState:
        return cls(**data)

    def copy(self) -> InstanceState:
        """A deep-enough copy: `decide` mutates the copy, never its input."""
        return replace(
            self,
            subject=dict(self.subject),
            context=dict(self.context),
            active=dict(self.active),
            visits=dict(self.visits),
            operators={k: list(v) for k, v in self.operators.items()},
            recent_event_ids=list(self.recent_event_ids),
            parent=dict(self.parent) if self.parent else None,
            lanes=copy.deepcopy(self.lanes) if self.lanes else {},  # most have none
            splits=copy.deepcopy(self.splits) if self.splits else {},
            deferred=list(self.deferred),  # entries are never changed, only added and removed
            pending=list(self.pending),  # likewise: a migration replaces them, never edits them
        )

    def remember(self, event_id: str) -> None:
        self.recent_event_ids.append(event_id)
        del self.recent_event_ids[:-RECENT_EVENT_IDS]
