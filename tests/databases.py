"""Database fixtures (a pytest plugin): real SQLite files and real PostgreSQL databases.

``postgres_url`` creates a fresh database ``autoflow_test_<random>`` on the server named by
AUTOFLOW_TEST_POSTGRES (default ``host=127.0.0.1 port=5432 user=postgres dbname=postgres``,
as a libpq connection string) and drops it afterwards. ``db_url`` runs a test on both.

When AUTOFLOW_TEST_POSTGRES is not set and the tests cannot connect to the default server, the
first test that needs PostgreSQL starts a throwaway cluster
(``initdb`` on a free port in a temporary directory, tests/pgcluster.py) for the whole session,
points AUTOFLOW_TEST_POSTGRES at it and removes it at the end; under pytest-xdist the controller
does so before the workers start, and they share it. One line says which server the tests use.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from autoflow.store import RunStore
from tests.pgcluster import Cluster, configured_conninfo, where, why_unusable

CLUSTER_KEY = pytest.StashKey[Cluster]()
CONFIGURED_KEY = pytest.StashKey["str | None"]()  # AUTOFLOW_TEST_POSTGRES as it was, once a server is chosen


def admin_conninfo() -> str:
    """The libpq connection string of the test server's admin (read when needed: a session may start its own)."""
    return configured_conninfo()


def _say(config: pytest.Config, line: str) -> None:
    """``line`` on the terminal, on a line of its own, even from inside a test."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if config.get_terminal_writer().width_of_current_line:
            reporter.write("\n")
        reporter.write_line(line)


def ensure_server(config: pytest.Config) -> None:
    """Make AUTOFLOW_TEST_POSTGRES name a server that answers (once): the configured one, else a throwaway cluster."""
    if CONFIGURED_KEY in config.stash:
        return
    conninfo = configured_conninfo()
    config.stash[CONFIGURED_KEY] = os.environ.get("AUTOFLOW_TEST_POSTGRES")
    reason = why_unusable(conninfo)
    explicit = bool(os.environ.get("AUTOFLOW_TEST_POSTGRES"))
    if reason is None:
        source = "AUTOFLOW_TEST_POSTGRES" if explicit else "the default; AUTOFLOW_TEST_POSTGRES sets another"
        _say(config, f"PostgreSQL for tests: the server on {where(conninfo)} ({source})")
        return
    if explicit:  # the server asked for, not a stand-in that would test something else
        pytest.fail(
            f"PostgreSQL for tests: {reason} (AUTOFLOW_TEST_POSTGRES); start that server or fix the variable, "
            "unset it to use the local server (or a throwaway cluster when none answers), "
            "or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )
    try:
        cluster = Cluster(password=False, prefix="autoflow-test-pg-")
    except RuntimeError as exc:
        pytest.fail(
            f"PostgreSQL for tests: {reason}, and no throwaway cluster could be started: {exc}; "
            "or point AUTOFLOW_TEST_POSTGRES at a server, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )
    config.stash[CLUSTER_KEY] = cluster
    os.environ["AUTOFLOW_TEST_POSTGRES"] = cluster.conninfo
    _say(config, f"PostgreSQL for tests: a throwaway cluster on 127.0.0.1:{cluster.port} in {cluster.dir} ({reason})")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller chooses before the workers start: they inherit AUTOFLOW_TEST_POSTGRES."""
    config = session.config
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")
    if controller and "not postgres" not in (config.option.markexpr or ""):
        with contextlib.suppress(pytest.fail.Exception):  # then each worker tries, and says why in its tests
            ensure_server(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop and remove the throwaway cluster this process started, if any; AUTOFLOW_TEST_POSTGRES as it was."""
    cluster = config.stash.get(CLUSTER_KEY, None)
    if cluster is None:
        return
    del config.stash[CLUSTER_KEY]
    cluster.close()
    configured = config.stash[CONFIGURED_KEY]
    if configured is None:
        os.environ.pop("AUTOFLOW_TEST_POSTGRES", None)
    else:
        os.environ["AUTOFLOW_TEST_POSTGRES"] = configured


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> str:
    """The admin connection string of a PostgreSQL server that answers (see the module's docstring)."""
    ensure_server(pytestconfig)
    return admin_conninfo()


def postgres_url_for(database: str, *, password: str | None = None, query: str = "") -> str:
    """A ``postgresql+psycopg://`` URL for ``database`` on the test server."""
    info = conninfo_to_dict(admin_conninfo())
    user = str(info.get("user", "postgres"))
    credentials = user if password is None else f"{user}:{password}"
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    return f"postgresql+psycopg://{credentials}@{host}:{port}/{database}{query}"


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the test server's maintenance database."""
    try:
        return psycopg.connect(admin_conninfo(), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable with {admin_conninfo()!r} ({exc}); start it, or point "
            "AUTOFLOW_TEST_POSTGRES at one, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
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
