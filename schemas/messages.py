"""Messages on the instance-keyed topics: the `data` of each CloudEvent.

Every model is frozen. The CloudEvents `type` (see `schemas.topics`) names the message and its
schema version; a new incompatible shape gets a new `.vN` type and an upcaster in one decode
spot, never a Python class path on the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def dump_json(self) -> bytes:
        """`dump()` written as compact UTF-8 JSON, by pydantic's serializer in one step."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Subject(_Msg):
    """What flows through the process: a part serial, a ticket, a document."""

    type: str = Field(min_length=1)
    id: str = Field(min_length=1)


class ProcessRef(_Msg):
    key: str
    version: int


# --- flowline.instance-requests -------------------------------------------------------------


class ParentRef(_Msg):
    """The parent step a child instance runs for: the child's end completes that step's visit."""

    instance_id: str = Field(min_length=1)
    step: str = Field(min_length=1)
    visit: int = Field(ge=1)


class StartInstance(_Msg):
    """Start an instance. Without `version` the latest approved version is used."""

    instance_id: str = Field(min_length=1, max_length=200)
    tenant: str = "default"
    process: str = Field(min_length=1)
    version: int | None = None
    subject: Subject
    work_order: str | None = None
    priority: Priority = Priority.MEDIUM
    context: dict[str, Any] = Field(default_factory=dict)
    parent: ParentRef | None = None  # set when a parent's `subprocess` step started this one


class InstanceAction(StrEnum):
    CANCEL = "cancel"
    HOLD = "hold"
    RESUME = "resume"
    MIGRATE = "migrate"


class ControlInstance(_Msg):
    """Cancel, hold, resume or migrate a running instance.

    `migrate` moves it to `to_version` of its process (`schemas.migration` decides whether it
    fits); `step_map` renames steps whose id changed between the versions. `drop_held` (resume
    only) drops the steps a routing hold kept instead of retrying them: the instance goes on
    with the steps it waits on (the resumed event's `dropped` names the dropped steps; see
    services/router/routing/decide.py for the parallel branches). `parent` is set by
    the router on the cancel it sends a child when the parent ends: the child, whose own
    `parent` it matches, then does not report its end back to the parent that already ended.
    """

    instance_id: str = Field(min_length=1)
    action: InstanceAction
    reason: str | None = None
    operator: str | None = None
    to_version: int | None = Field(default=None, ge=1)
    step_map: dict[str, str] | None = None
    parent: ParentRef | None = None
    drop_held: bool = False

    def dump(self) -> dict[str, Any]:
        """As `_Msg.dump`, leaving out `drop_held` when false: a request that does not drop
        anything reads exactly as it did before the field existed."""
        data = super().dump()
        if not self.drop_held:
            data.pop("drop_held", None)
        return data

    def dump_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(
            self, exclude_none=True, exclude=None if self.drop_held else {"drop_held"})


# --- flowline.step-completions --------------------------------------------------------------


class StepCompletion(_Msg):
    """A step was done: by an operator, a machine, an automated handler or a timer.

    The CloudEvent id is the idempotency key: sending the same completion twice is safe.
    """

    instance_id: str = Field(min_length=1)
    step: str = Field(min_length=1)
    visit: int | None = Field(default=None, ge=1)
    outcome: str | None = None  # pass | fail | a named edge; None on non-decision steps
    measurements: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = None
    equipment: str | None = None
    note: str | None = None


# --- flowline.step-commands -----------------------------------------------------------------


class StepCommand(_Msg):
    """Enter a step: what a task service, a worker or a machine needs to do the work."""

    command_id: str  # "instance/step/visit": deterministic, so consumers can dedupe
    instance_id: str
    tenant: str
    process: ProcessRef
    step: str
    step_type: str
    step_name: str | None = None
    visit: int
    visits: dict[str, int]
    role: str | None = None
    escalate_to: str | None = None
    revisit_assignment: str = "any"
    revisit_role: str | None = None
    previous_operators: list[str] = Field(default_factory=list)
    instructions: str | None = None
    decision_type: str | None = None
    outcomes: list[str] = Field(default_factory=list)  # the outcomes this step accepts
    priority: str = "medium"
    subject: Subject | None = None
    work_order: str | None = None
    reason: str  # why the step was entered: started | pass | fail | escalated | <outcome>
    entered_at: str
    due_at: str | None = None
    timer: str | None = None
    wake_at: str | None = None  # timer steps: when to complete the step (entered_at + timer)
    action: dict[str, Any] | None = None
    context: dict[str, Any] = Field(default_factory=dict)


# --- flowline.instance-events ---------------------------------------------------------------


class InstanceEventKind(StrEnum):
    STARTED = "started"
    STEP_ENTERED = "step_entered"
    STEP_COMPLETED = "step_completed"
    ESCALATED = "escalated"
    HELD = "held"
    RESUMED = "resumed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    MIGRATED = "migrated"


class ParallelState(_Msg):
    """Where an instance stands in its parallel blocks (the router's `lanes` and `splits`).

    `lanes`: active step -> its branch `{"split": "<split>/<visit>", "branch": ...}`;
    `splits`: open split visit -> `{"step", "branches", "arrived", "ended", "join",
    "join_visit", "outer"}`. Both empty: the instance is in no parallel block.
    """

    lanes: dict[str, dict[str, str]] = Field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = Field(default_factory=dict)


class InstanceEvent(_Msg):
    """Something happened to an instance; integrators and the journey read model follow these."""

    kind: InstanceEventKind
    instance_id: str
    tenant: str = "default"
    process: ProcessRef | None = None
    at: str
    step: str | None = None
    step_type: str | None = None  # on step_entered: start and terminal steps close at once
    visit: int | None = None
    outcome: str | None = None
    operator: str | None = None
    measurements: dict[str, Any] | None = None
    to_step: str | None = None  # escalated: where the instance went instead
    terminal_status: str | None = None
    status: str | None = None  # the instance status after this event
    reason: str | None = None
    subject: Subject | None = None
    work_order: str | None = None
    visits: dict[str, int] | None = None
    source_event_id: str | None = None  # the request/completion that caused this event
    from_version: int | None = None  # migrated: the version it left (`process` is the new one)
    active_steps: list[str] | None = None  # migrated: the steps it waits on in the new version
    dropped: list[str] | None = None  # resumed with drop_held: the held steps it dropped
    # The parallel state after this event, on the last event of a change made to an instance
    # that is (or just was) inside a parallel block; empty when it left its last block.
    parallel: ParallelState | None = None


# --- flowline.dead-letters ------------------------------------------------------------------


class RejectReason(StrEnum):
    MALFORMED = "malformed"  # not a CloudEvent, bad JSON, fails its schema
    UNSUPPORTED_TYPE = "unsupported_type"  # a ce_type this consumer does not know
    UNKNOWN_INSTANCE = "unknown_instance"
    STALE = "stale"  # a step or visit the instance is not in
    NO_MATCHING_EDGE = "no_matching_edge"  # an outcome the step has no edge for
    UNKNOWN_PROCESS = "unknown_process"  # no such approved process/version
    PROCESS_NOT_ACTIVE = "process_not_active"  # paused or deprecated: starts no instances
    INSTANCE_EXISTS = "instance_exists"
    INSTANCE_NOT_RUNNING = "instance_not_running"  # completed, cancelled or on hold
    INVALID_TRANSITION = "invalid_transition"  # e.g. resume an instance that is not held
    PROCESSING_ERROR = "processing_error"  # a bug: the record is kept here, not lost


class DeadLetter(_Msg):
    """A record a consumer could not apply, kept whole with the reason."""

    reason: RejectReason
    detail: str
    consumer: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    value: str | None = None  # the original value as UTF-8, or base64 when it is not text
    value_encoding: str = "utf-8"
    at: str


# --- flowline.task-events -------------------------------------------------------------------


class TaskEventKind(StrEnum):
    CREATED = "created"
    CLAIMED = "claimed"
    RELEASED = "released"
    COMPLETED = "completed"
    BREACHED = "breached"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"  # no longer needed: the instance ended, moved on or migrated


class TaskEvent(_Msg):
    """A change to an inbox task, for dashboards and integrators."""

    kind: TaskEventKind
    task_id: str
    instance_id: str
    tenant: str = "default"
    step: str
    visit: int
    role: str | None = None
    operator: str | None = None
    outcome: str | None = None
    at: str
