"""The run history: one row per run attempt.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    op.create_table(
        "autoflow_run_attempts",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("workflow", sa.String(255), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("reference_date", sa.Date, nullable=False),
        sa.Column("date_ranges", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("notebooks", sa.JSON, nullable=False),
        sa.Column("reports", sa.JSON, nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_autoflow_run_attempts"),
        sa.CheckConstraint(
            "state IN ('running', 'success', 'failed')", name="ck_autoflow_run_attempts_state"
        ),
        sa.CheckConstraint("trigger IN ('sensor', 'manual')", name="ck_autoflow_run_attempts_trigger"),
        sa.CheckConstraint("attempt >= 1", name="ck_autoflow_run_attempts_attempt"),
        # claiming attempt N+1 of a run succeeds once
        sa.UniqueConstraint(
            "workflow", "params_hash", "reference_date", "attempt", name="uq_autoflow_run_attempts_attempt"
        ),
    )
    # at most one running attempt per run
    op.create_index(
        "uq_autoflow_run_attempts_one_running",
        "autoflow_run_attempts",
        ["workflow", "params_hash", "reference_date"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("uq_autoflow_run_attempts_one_running", table_name="autoflow_run_attempts")
    op.drop_table("autoflow_run_attempts")
