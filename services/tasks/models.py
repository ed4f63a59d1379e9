"""SQL tables of the tasks service: the inbox (`tasks`), the journey read model, and the
automation tables (timers, jobs and their logs, the message outbox, analyses).

Timestamps are stored as naive UTC and handed back timezone-aware, so SQLite and PostgreSQL
agree and comparisons never mix naive and aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that is always UTC, whatever the database keeps."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


# Task statuses; "active" ones still show in inboxes.
OPEN, CLAIMED, COMPLETED, CANCELLED = "open", "claimed", "completed", "cancelled"
ACTIVE = (OPEN, CLAIMED)


class Task(Base):
    """One inbox entry per step command; `task_id` is the command id, so redelivery is a no-op."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_inbox", "status", "role"),
        Index("ix_tasks_instance_step", "instance_id", "step"),
        Index("ix_tasks_instance_status", "instance_id", "status"),
        Index("ix_tasks_sla_due", "status", "breached_at", "due_at"),  # the SLA sweep's read
    )

    task_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    command_id: Mapped[str] = mapped_column(String(400), unique=True)
    instance_id: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100))
    process_key: Mapped[str] = mapped_column(String(200))
    process_version: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(200))
    step_name: Mapped[str | None] = mapped_column(String(200))
    step_type: Mapped[str] = mapped_column(String(40))
    visit: Mapped[int] = mapped_column(Integer)
    visits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    role: Mapped[str | None] = mapped_column(String(100))
    station: Mapped[str | None] = mapped_column(String(100))
    escalate_to: Mapped[str | None] = mapped_column(String(100))
    revisit_assignment: Mapped[str] = mapped_column(String(20), default="any")
    revisit_role: Mapped[str | None] = mapped_column(String(100))
    previous_operators: Mapped[list[str]] = mapped_column(JSON, default=list)
    instructions: Mapped[str | None] = mapped_column(Text)
    decision_type: Mapped[str | None] = mapped_column(String(40))
    outcomes: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[str] = mapped_column(String(20), default="medium")
    subject: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    work_order: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=OPEN)
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(200))

    # --- SLA breach and escalation (issue 5) -------------------------------------------------
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    original_role: Mapped[str | None] = mapped_column(String(100), default=None)

    # --- Timers and automated steps (issue 5) ------------------------------------------------
    # Who does the work when it is not a person: "timer", "http", "webhook" or "handler".
    executor: Mapped[str | None] = mapped_column(String(20), default=None)
    # Why the automation gave up (the instance was put on hold with it); None while all is well.
    incident: Mapped[str | None] = mapped_column(Text, default=None)
    incident_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Instance(Base):
    """The latest known state of an instance, folded from `flowline.instance-events`."""

    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_status", "status"),)

    instance_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), default="default")
    process_key: Mapped[str | None] = mapped_column(String(200))
    process_version: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="running")
    terminal_status: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    work_order: Mapped[str | None] = mapped_column(String(200))
    active_steps: Mapped[list[str]] = mapped_column(JSON, default=list)
    visits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # The router's lanes and splits while the instance is inside a parallel block (the latest
    # `parallel` of its events), None outside: a migration dry run checks them.
    parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: started not seen
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Visit(Base):
    """One entry of a step: the rows of an instance's journey, in order of entry."""

    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("instance_id", "step", "visit", name="uq_visit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(200), index=True)
    step: Mapped[str] = mapped_column(String(200))
    visit: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(200))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    exited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(200))
    operator: Mapped[str | None] = mapped_column(String(200))
    measurements: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# --- Task events outbox (issue 5) ----------------------------------------------------------


class TaskOutbox(Base):
    """A task event to publish, written in the same transaction as the task change it announces.

    `event_id` is the CloudEvent id (deterministic per change); rows are never updated but for
    the publisher's bookkeeping (`sent_at`, `attempts`, `last_error`).
    """

    __tablename__ = "task_outbox"
    __table_args__ = (
        Index("ix_task_outbox_pending", "sent_at", "id"),
        Index("ix_task_outbox_event", "event_id"),
        Index("ix_task_outbox_task", "task_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(500))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


# --- Timers, jobs, the message outbox, analyses (issue 5) ----------------------------------

# Timer statuses.
PENDING, FIRED = "pending", "fired"  # and CANCELLED


class Timer(Base):
    """A timer step's wake-up, persisted so it fires after a restart too."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_due", "status", "wake_at"),
        Index("ix_timers_instance_status", "instance_id", "status"),  # the fold's reads
    )

    timer_id: Mapped[str] = mapped_column(String(400), primary_key=True)  # the command id
    instance_id: Mapped[str] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(200))
    visit: Mapped[int] = mapped_column(Integer)
    wake_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# Job statuses: queued -> running -> succeeded | failed (| cancelled when the step is over).
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
LIVE_JOB = (QUEUED, RUNNING)


class Job(Base):
    """An automated step's work: an HTTP call the service makes or a handler a worker runs.

    Leased: `lease_token` names the current holder and `lease_expires_at` when it loses the job;
    only the holder may complete it, so a job is completed at most once.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_ready", "status", "kind", "available_at"),
        Index("ix_jobs_lease", "status", "lease_expires_at"),
        Index("ix_jobs_instance_status", "instance_id", "status"),  # the fold's reads
    )

    job_id: Mapped[str] = mapped_column(String(400), primary_key=True)  # the command id
    instance_id: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(200))
    visit: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # http | webhook | handler
    handler: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    progress_message: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[str | None] = mapped_column(String(200), default=None)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_stack: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class JobLog(Base):
    """One step a job logged (seed 004's `log_step`), with an optional link to an entity."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(400))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    entity_tag: Mapped[str | None] = mapped_column(String(200))
    entity_route: Mapped[str | None] = mapped_column(String(400))
    entity_id: Mapped[str | None] = mapped_column(String(200))
    entity_type: Mapped[str | None] = mapped_column(String(100))


class MessageOutbox(Base):
    """A step completion or an instance request the service owes the router, written in the
    transaction that decided it (a timer fired, a job finished, a job gave up) and sent later.

    `topic` is the topic's suffix (`step-completions`, `instance-requests`): the prefix is the
    running service's.
    """

    __tablename__ = "message_outbox"
    __table_args__ = (Index("ix_message_outbox_pending", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(500), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    ce_type: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Analysis(Base):
    """A data analysis submitted through `/v1/analyses` (seed 003): its id is the instance id."""

    __tablename__ = "analyses"

    analysis_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    process_key: Mapped[str] = mapped_column(String(200))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Calendar(Base):
    """A tenant's business calendar (`services/tasks/calendar.py`): SLAs count working time."""

    __tablename__ = "calendars"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
