"""Alembic environment for the run history.

AutoFlow passes an open connection (``config.attributes["connection"]``, already inside a
transaction); the ``alembic`` command line gets one from AUTOFLOW_DB_URI like AutoFlow does.
"""

from __future__ import annotations

from alembic import context

from autoflow.settings import Settings
from autoflow.store.schema import VERSION_TABLE, metadata


def run_migrations(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=True,  # SQLite can only ALTER TABLE by copying it
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    from autoflow.store.engine import WRITE, create_engine, parse_url

    settings = Settings.from_env()
    engine = create_engine(parse_url(settings.db_url, settings.db_url_masked), settings.db_url_masked)
    try:
        with engine.connect().execution_options(**{WRITE: True}) as connection, connection.begin():
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("AutoFlow's migrations run online only: drop --sql")
connection = context.config.attributes.get("connection")
if connection is None:
    run_from_command_line()
else:
    run_migrations(connection)
