"""tasks due for the SLA sweep, by (status, breached_at, due_at)

The sweep asks every second for the active tasks due by now and not yet breached. SQLite
answered it from the (status, role) index: a scan of every active task, each second (24 ms
with 50,000 open, against 0.16 ms with this index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 00:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_tasks_sla_due', 'tasks', ['status', 'breached_at', 'due_at'])


def downgrade() -> None:
    op.drop_index('ix_tasks_sla_due', table_name='tasks')
