"""tasks by instance and status (the consumer's per-batch read of active tasks)

Without it SQLite answers `instance_id IN (...) AND status IN ('open', 'claimed')` from the
(status, role) index: a scan of every open task in the inbox, per batch.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_tasks_instance_status', 'tasks', ['instance_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_tasks_instance_status', table_name='tasks')
