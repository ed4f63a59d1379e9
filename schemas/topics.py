"""One place per topic contract: name, key, value models, CloudEvents types and config.

The prefix (`flowline.` by default) is configurable; instance-keyed topics share one partition
count so a worker that owns partition N of one owns partition N of all (co-partitioning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.graph import ProcessVersion
from schemas.messages import (
    ControlInstance,
    DeadLetter,
    InstanceEvent,
    InstanceEventKind,
    StartInstance,
    StepCommand,
    StepCompletion,
    TaskEvent,
)

SOURCE = "flowline"  # CloudEvents `source` prefix: flowline/<service>


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    key: str
    writers: str
    types: dict[str, type[BaseModel]]  # ce_type -> data model
    instance_keyed: bool = True
    config: dict[str, str] = field(default_factory=dict)

    def name(self, prefix: str = "flowline.") -> str:
        return f"{prefix}{self.suffix}"


# CloudEvents types: the name of the event and its schema version.
START_V1 = "flowline.instance.start.v1"
CANCEL_V1 = "flowline.instance.cancel.v1"
HOLD_V1 = "flowline.instance.hold.v1"
RESUME_V1 = "flowline.instance.resume.v1"
MIGRATE_V1 = "flowline.instance.migrate.v1"
COMPLETED_V1 = "flowline.step.completed.v1"
COMMAND_V1 = "flowline.step.command.v1"
DEFINITION_V1 = "flowline.process.version.v1"
DEAD_LETTER_V1 = "flowline.dead_letter.v1"
TASK_EVENT_V1 = "flowline.task.event.v1"


def instance_event_type(kind: str) -> str:
    """`flowline.instance.<kind>.v1`, e.g. `flowline.instance.step_entered.v1`."""
    return f"flowline.instance.{kind}.v1"


DEFINITIONS = TopicSpec(
    "definitions",
    key="tenant/process_key/version",
    writers="definitions",
    types={DEFINITION_V1: ProcessVersion},
    instance_keyed=False,
    config={"cleanup.policy": "compact"},
)
INSTANCE_REQUESTS = TopicSpec(
    "instance-requests",
    key="instance id",
    writers="gateway, integrators, tasks, router",
    types={
        START_V1: StartInstance,
        CANCEL_V1: ControlInstance,
        HOLD_V1: ControlInstance,
        RESUME_V1: ControlInstance,
        MIGRATE_V1: ControlInstance,
    },
)
STEP_COMPLETIONS = TopicSpec(
    "step-completions",
    key="instance id",
    writers="equipment, gateway, tasks, router",
    types={COMPLETED_V1: StepCompletion},
)
STEP_COMMANDS = TopicSpec(
    "step-commands", key="instance id", writers="router", types={COMMAND_V1: StepCommand}
)
INSTANCE_EVENTS = TopicSpec(
    "instance-events",
    key="instance id",
    writers="router",
    types={instance_event_type(k.value): InstanceEvent for k in InstanceEventKind},
)
TASK_EVENTS = TopicSpec(
    "task-events", key="instance id", writers="tasks", types={TASK_EVENT_V1: TaskEvent}
)
DEAD_LETTERS = TopicSpec(
    "dead-letters",
    key="original key",
    writers="every consumer",
    types={DEAD_LETTER_V1: DeadLetter},
    instance_keyed=False,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    DEFINITIONS,
    INSTANCE_REQUESTS,
    STEP_COMPLETIONS,
    STEP_COMMANDS,
    INSTANCE_EVENTS,
    TASK_EVENTS,
    DEAD_LETTERS,
)
