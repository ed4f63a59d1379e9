"""Process graphs: the JSON that designers write and `flowline.definitions` carries.

A graph is steps (nodes) and edges. Unknown fields are kept (``extra="allow"``) so a newer
designer can add fields without an older service dropping them on the way through.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StepType(StrEnum):
    START = "start"
    TASK = "task"
    DECISION = "decision"
    REWORK = "rework"
    AUTOMATED = "automated"
    TIMER = "timer"
    PARALLEL = "parallel"
    JOIN = "join"
    SUBPROCESS = "subprocess"
    TERMINAL = "terminal"


class DecisionType(StrEnum):
    QA_RESULT = "qa_result"
    MEASUREMENT = "measurement"
    MANUAL = "manual"
    EXPRESSION = "expression"


class RevisitAssignment(StrEnum):
    ANY = "any"
    SAME = "same"
    DIFFERENT = "different"
    ROLE = "role"


class TerminalStatus(StrEnum):
    COMPLETED = "completed"
    SCRAPPED = "scrapped"
    RETURNED = "returned"
    RMA = "rma"
    HOLD = "hold"
    CANCELLED = "cancelled"
    FAILED = "failed"  # a job sequence (seed 004) or analysis (seed 003) that could not finish


class EdgeType(StrEnum):
    DEFAULT = "default"  # pass, or the one way on
    ALTERNATE = "alternate"  # fail
    ESCALATION = "escalation"  # taken when the target's max_visits is exhausted
    CONDITION = "condition"  # measurement threshold or expression


class Operator(StrEnum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EQ = "eq"
    BETWEEN = "between"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Condition(_Model):
    """A measurement threshold (``measurement`` + ``operator`` + value) or an expression."""

    measurement: str | None = None
    operator: Operator | None = None
    value: float | None = None
    values: tuple[float, float] | None = None  # for `between`, inclusive
    unit: str | None = None
    tolerance: float = 0.0
    expression: str | None = None


class SubprocessRef(_Model):
    """The process a `subprocess` step runs as a child instance.

    `version` pins one; without it the child gets the latest approved version at the moment the
    parent enters the step (the router resolves it when it starts the child).
    """

    process: str = Field(min_length=1)
    version: int | None = Field(default=None, ge=1)


class Step(_Model):
    id: str = Field(min_length=1, max_length=200)
    type: StepType = StepType.TASK
    name: str | None = None
    role: str | None = None
    escalate_to: str | None = None
    weight: float | None = None
    instructions: str | None = None
    decision_type: DecisionType | None = None
    max_visits: int | None = Field(default=None, ge=1)
    revisit_assignment: RevisitAssignment = RevisitAssignment.ANY
    revisit_role: str | None = None
    terminal_status: TerminalStatus | None = None
    timer: str | None = None  # ISO-8601 duration, e.g. "PT30M"
    action: dict[str, Any] | None = None  # automated step: what to run
    subprocess: SubprocessRef | None = None  # subprocess step: the child process to run
    design: dict[str, Any] | None = None  # designer coordinates {x, y}


class Edge(_Model):
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    type: EdgeType = EdgeType.DEFAULT
    name: str | None = None  # transition name / named outcome: "scrap", "Approve"
    condition: Condition | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Slas(_Model):
    """Resolution time per priority, ISO-8601 durations or "HH:MM:SS"."""

    urgent: str | None = None
    high: str | None = None
    medium: str | None = None
    low: str | None = None


class ProcessGraph(_Model):
    """A process as designed: what `POST /v1/processes` takes."""

    key: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    name: str | None = None
    description: str | None = None
    tenant: str = "default"
    category: str | None = None
    sub_category: str | None = None
    department: str | None = None
    slas: Slas | None = None
    steps: tuple[Step, ...] = ()
    edges: tuple[Edge, ...] = ()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ProcessVersion(ProcessGraph):
    """An approved, immutable version: the value of a `flowline.definitions` record.

    Written complete (never a delta) because the router rebuilds its view by reading the
    compacted topic from the start, bypassing any processing logic.
    """

    version: int = Field(ge=1)
    status: str = "approved"  # approved | paused | deprecated
    approved_at: str | None = None
    copied_from: str | None = None

    @property
    def topic_key(self) -> str:
        return definition_key(self.tenant, self.key, self.version)


def definition_key(tenant: str, key: str, version: int) -> str:
    """The `flowline.definitions` record key: ``tenant/process_key/version``."""
    return f"{tenant}/{key}/{version}"
