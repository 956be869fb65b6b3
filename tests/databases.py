"""Database fixtures (a pytest plugin): real SQLite files and real PostgreSQL databases.

``postgres_url`` creates a fresh database ``autoflow_test_<random>`` on the server named by
AUTOFLOW_TEST_POSTGRES (default ``host=127.0.0.1 port=5432 user=postgres dbname=postgres``,
as a libpq connection string) and drops it afterwards. ``db_url`` runs a test on both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from autoflow.store import RunStore

ADMIN_CONNINFO = os.environ.get(
    "AUTOFLOW_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


def postgres_url_for(database: str, *, password: str | None = None, query: str = "") -> str:
    """A ``postgresql+psycopg://`` URL for ``database`` on the test server."""
    info = conninfo_to_dict(ADMIN_CONNINFO)
    user = str(info.get("user", "postgres"))
    credentials = user if password is None else f"{user}:{password}"
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    return f"postgresql+psycopg://{credentials}@{host}:{port}/{database}{query}"


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the test server's maintenance database."""
    try:
        return psycopg.connect(ADMIN_CONNINFO, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable with {ADMIN_CONNINFO!r} ({exc}); start it, or point "
            "AUTOFLOW_TEST_POSTGRES at one, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The name of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"autoflow_test_{secrets.token_hex(6)}"
    with admin_connection() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with admin_connection() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A SQLAlchemy URL for a fresh PostgreSQL database."""
    return postgres_url_for(postgres_database)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL for a SQLite file in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'history' / 'autoflow.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each supported kind: the test runs once per kind."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def run_store(db_url: str) -> Iterator[RunStore]:
    """An upgraded RunStore on ``db_url`` (both kinds), closed after the test."""
    store = RunStore(db_url)
    store.upgrade()
    try:
        yield store
    finally:
        store.close()
