"""Where an attempt executes: the Prefect worker and host whose process holds its lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("autoflow_run_attempts") as batch:
        batch.add_column(sa.Column("executor", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autoflow_run_attempts") as batch:
        batch.drop_column("executor")
