"""task events outbox and sla

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:37:37.817047
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('task_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=400), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=500), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_task_outbox_event', ['event_id'], unique=False)
        batch_op.create_index('ix_task_outbox_pending', ['sent_at', 'id'], unique=False)
        batch_op.create_index('ix_task_outbox_task', ['task_id', 'kind'], unique=False)

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('breached_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('original_role', sa.String(length=100), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('original_role')
        batch_op.drop_column('breached_at')

    with op.batch_alter_table('task_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_task_outbox_task')
        batch_op.drop_index('ix_task_outbox_pending')
        batch_op.drop_index('ix_task_outbox_event')

    op.drop_table('task_outbox')
