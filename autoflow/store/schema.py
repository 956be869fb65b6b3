"""The run history table: one row per run attempt.

``migrations/versions`` must create exactly this; a test compares them with Alembic's
autogenerate, so change both together (add a new revision, never edit a released one).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

STATES = ("running", "success", "failed", "cancelled")
#: sensor: planned by a tick; manual: `autoflow trigger`; rerun: `autoflow rerun`; backfill: `autoflow backfill`
TRIGGERS = ("sensor", "manual", "rerun", "backfill")

#: Alembic's own bookkeeping table; prefixed so AutoFlow can share a database with other apps.
VERSION_TABLE = "autoflow_alembic_version"

metadata = sa.MetaData(
    naming_convention={"ck": "ck_%(table_name)s_%(constraint_name)s", "pk": "pk_%(table_name)s"}
)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    Only aware datetimes are accepted; they are stored in UTC (SQLite has no time zones,
    so there the UTC wall time is stored) and always come back aware, in UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the run history only stores aware datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


run_attempts = sa.Table(
    "autoflow_run_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workflow", sa.String(255), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("params_hash", sa.String(64), nullable=False),
    sa.Column("reference_date", sa.Date, nullable=False),
    sa.Column("date_ranges", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("notebooks", sa.JSON, nullable=False),
    sa.Column("reports", sa.JSON, nullable=False),
    sa.Column("flow_run_id", sa.String(64), nullable=True),
    sa.Column("trigger", sa.String(16), nullable=False),
    # where the attempt executes ("worker-1 on host-a, pid 123"); NULL until a process takes its lease
    sa.Column("executor", sa.String(255), nullable=True),
    # `autoflow cancel` asked for this attempt to stop (when, and who asked); its lease sees it
    sa.Column("cancel_requested_at", UTCDateTime, nullable=True),
    sa.Column("cancel_requested_by", sa.String(255), nullable=True),
    sa.CheckConstraint("state IN ('running', 'success', 'failed', 'cancelled')", name="state"),
    sa.CheckConstraint("trigger IN ('sensor', 'manual', 'rerun', 'backfill')", name="trigger"),
    sa.CheckConstraint("attempt >= 1", name="attempt"),
    # The claim: attempt N+1 of a run can be inserted once, by whoever gets there first.
    # Its index also serves "latest attempt of every run" (an index probe per row).
    sa.UniqueConstraint(
        "workflow", "params_hash", "reference_date", "attempt", name="uq_autoflow_run_attempts_attempt"
    ),
    # Second guard: never two running attempts of one run. Also the index for "running rows".
    sa.Index(
        "uq_autoflow_run_attempts_one_running",
        "workflow",
        "params_hash",
        "reference_date",
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    ),
)
