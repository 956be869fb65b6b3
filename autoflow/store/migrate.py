"""Bring the run history schema up to date with Alembic, one process at a time."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

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


def upgrade(connection: Connection) -> None:
    """Run every pending migration inside ``connection``'s transaction.

    Concurrent upgrades wait for each other: PostgreSQL through a transaction-scoped advisory
    lock, SQLite because the caller's transaction began with ``BEGIN IMMEDIATE``.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(UPGRADE_LOCK_KEY)))
    command.upgrade(alembic_config(connection), "head")
