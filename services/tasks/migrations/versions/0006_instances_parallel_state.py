"""instances.parallel: the router's lanes and splits, for migration dry runs

The router's instance events carry `parallel` (lanes and split visits) while an instance is
inside a parallel block, and an empty one when it leaves its last block; the journey fold keeps
the latest here so `GET /v1/instances/{id}` can show it and the gateway's dry run can check a
migration against it as the router will.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('instances', sa.Column('parallel', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:  # SQLite rebuilds it
        batch_op.drop_column('parallel')
