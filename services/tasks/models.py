"""SQL tables of the tasks service: the inbox (`tasks`) and the journey read model.

Timestamps are stored as naive UTC and handed back timezone-aware, so SQLite and PostgreSQL
agree and comparisons never mix naive and aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
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
