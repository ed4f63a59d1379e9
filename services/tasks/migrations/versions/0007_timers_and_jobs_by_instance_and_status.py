"""timers and jobs by instance and status (the consumer's per-batch reads)

Without them SQLite answers `instance_id IN (...) AND status = 'pending'` from the
(status, wake_at) index, and `instance_id IN (...) AND status IN ('queued', 'running')` from
the (status, kind, available_at) one: a scan of every pending timer and every live job, per
batch (as 0005 found for tasks). Each (instance_id, status) index replaces the one on
instance_id alone, its prefix.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('timers', 'jobs'):
        op.create_index(f'ix_{table}_instance_status', table, ['instance_id', 'status'])
        op.drop_index(f'ix_{table}_instance_id', table_name=table)


def downgrade() -> None:
    for table in ('timers', 'jobs'):
        op.create_index(f'ix_{table}_instance_id', table, ['instance_id'])
        op.drop_index(f'ix_{table}_instance_status', table_name=table)
