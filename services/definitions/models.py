"""SQL tables of the definitions service. Every row carries its tenant.

Created and evolved by the Alembic revisions in ``migrations/`` (run at start-up).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Process(Base):
    """A process key within a tenant: its editable draft (if any) and where it was copied from."""

    __tablename__ = "processes"
    __table_args__ = (UniqueConstraint("tenant", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(120), index=True)
    key: Mapped[str] = mapped_column(String(120))
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Lineage of the current draft ("key/version"); handed to the version it becomes.
    copied_from: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Version(Base):
    """An approved, immutable graph; only ``status`` changes after approval."""

    __tablename__ = "versions"
    # The unique constraint is what makes two concurrent approvals of one key safe.
    __table_args__ = (UniqueConstraint("tenant", "key", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(120), index=True)
    key: Mapped[str] = mapped_column(String(120))
    version: Mapped[int] = mapped_column(Integer)
    graph: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="approved")
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    copied_from: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Outbox(Base):
    """An event to publish, written in the same transaction as the change it announces."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(120))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    ce_type: Mapped[str] = mapped_column(String(120))
    event_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
