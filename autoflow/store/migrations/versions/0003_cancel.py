"""Operator levers: the ``cancelled`` state, the ``rerun`` and ``backfill`` triggers, and a
cancel request a running attempt's lease sees.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autoflow.store.schema import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

STATE = "ck_autoflow_run_attempts_state"
TRIGGER = "ck_autoflow_run_attempts_trigger"


def upgrade() -> None:
    with op.batch_alter_table("autoflow_run_attempts") as batch:
        batch.drop_constraint(STATE, type_="check")
        batch.drop_constraint(TRIGGER, type_="check")
        batch.create_check_constraint(op.f(STATE), "state IN ('running', 'success', 'failed', 'cancelled')")
        batch.create_check_constraint(op.f(TRIGGER), "trigger IN ('sensor', 'manual', 'rerun', 'backfill')")
        batch.add_column(sa.Column("cancel_requested_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autoflow_run_attempts") as batch:
        batch.drop_column("cancel_requested_by")
        batch.drop_column("cancel_requested_at")
        batch.drop_constraint(STATE, type_="check")
        batch.drop_constraint(TRIGGER, type_="check")
        batch.create_check_constraint(op.f(STATE), "state IN ('running', 'success', 'failed')")
        batch.create_check_constraint(op.f(TRIGGER), "trigger IN ('sensor', 'manual')")
