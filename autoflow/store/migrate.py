"""Bring the run history schema up to date with Alembic, one process at a time."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from autoflow.store.schema import VERSION_TABLE

HERE = Path(__file__).resolve().parent
ALEMBIC_INI = HERE / "alembic.ini"

#: pg_advisory_xact_lock key serialising schema upgrades ("autoflow" as a 64-bit integer)
UPGRADE_LOCK_KEY = int.from_bytes(b"autoflow", "big")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the bundled migrations, usable from any working directory.

    ``connection`` is handed to ``migrations/env.py``; the URL is never written into the
    config (it may hold a password, and ``%`` in it would upset ConfigParser).
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(HERE / "migrations").replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this AutoFlow knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "autoflow/store/migrations/versions has no revisions"
    return head


def schema_status(connection: Connection) -> str:
    """Read, without changing anything, how the schema compares with this AutoFlow's.

    "missing" (no AutoFlow tables yet), "current", "old" (``autoflow db upgrade`` migrates it) or
    "newer" (written by a newer AutoFlow).
    """
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return "missing"
    version = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    if version is None:
        return "missing"
    if version == head_revision():
        return "current"
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    return "old" if version in known else "newer"


def upgrade(connection: Connection) -> None:
    """Run every pending migration inside ``connection``'s transaction.

    Concurrent upgrades wait for each other: PostgreSQL through a transaction-scoped advisory
    lock, SQLite because the caller's transaction began with ``BEGIN IMMEDIATE``.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(UPGRADE_LOCK_KEY)))
    command.upgrade(alembic_config(connection), "head")
