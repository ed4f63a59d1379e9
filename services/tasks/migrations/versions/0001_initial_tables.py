"""initial tables

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 05:37:08.227585
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('instances',
    sa.Column('instance_id', sa.String(length=200), nullable=False),
    sa.Column('tenant', sa.String(length=100), nullable=False),
    sa.Column('process_key', sa.String(length=200), nullable=True),
    sa.Column('process_version', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('terminal_status', sa.String(length=40), nullable=True),
    sa.Column('subject', sa.JSON(), nullable=True),
    sa.Column('work_order', sa.String(length=200), nullable=True),
    sa.Column('active_steps', sa.JSON(), nullable=False),
    sa.Column('visits', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id')
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index('ix_instances_status', ['status'], unique=False)

    op.create_table('tasks',
    sa.Column('task_id', sa.String(length=400), nullable=False),
    sa.Column('command_id', sa.String(length=400), nullable=False),
    sa.Column('instance_id', sa.String(length=200), nullable=False),
    sa.Column('tenant', sa.String(length=100), nullable=False),
    sa.Column('process_key', sa.String(length=200), nullable=False),
    sa.Column('process_version', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('step_name', sa.String(length=200), nullable=True),
    sa.Column('step_type', sa.String(length=40), nullable=False),
    sa.Column('visit', sa.Integer(), nullable=False),
    sa.Column('visits', sa.JSON(), nullable=False),
    sa.Column('role', sa.String(length=100), nullable=True),
    sa.Column('station', sa.String(length=100), nullable=True),
    sa.Column('escalate_to', sa.String(length=100), nullable=True),
    sa.Column('revisit_assignment', sa.String(length=20), nullable=False),
    sa.Column('revisit_role', sa.String(length=100), nullable=True),
    sa.Column('previous_operators', sa.JSON(), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=True),
    sa.Column('decision_type', sa.String(length=40), nullable=True),
    sa.Column('outcomes', sa.JSON(), nullable=False),
    sa.Column('priority', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.JSON(), nullable=True),
    sa.Column('work_order', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('task_id'),
    sa.UniqueConstraint('command_id')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_inbox', ['status', 'role'], unique=False)
        batch_op.create_index('ix_tasks_instance_step', ['instance_id', 'step'], unique=False)

    op.create_table('visits',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('instance_id', sa.String(length=200), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('visit', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('entered_at', sa.DateTime(), nullable=False),
    sa.Column('exited_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=200), nullable=True),
    sa.Column('operator', sa.String(length=200), nullable=True),
    sa.Column('measurements', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'step', 'visit', name='uq_visit')
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visits_instance_id'))

    op.drop_table('visits')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_instance_step')
        batch_op.drop_index('ix_tasks_inbox')

    op.drop_table('tasks')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_status')

    op.drop_table('instances')
