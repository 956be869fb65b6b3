"""SQLAlchemy engines for the run history, and database errors turned into RunStoreError.

SQLite gets WAL, a busy timeout, foreign keys and real transactions (SQLAlchemy emits BEGIN,
not the sqlite3 module, so reads are repeatable and DDL is transactional); a connection
opened with ``execution_options(autoflow_write=True)`` begins with ``BEGIN IMMEDIATE`` so
writers queue up on the busy timeout instead of failing half way.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from autoflow.errors import RunStoreError

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
WRITE = "autoflow_write"


def parse_url(url: str, display_url: str) -> URL:
    """``url`` parsed, or a RunStoreError naming it by ``display_url``."""
    try:
        return make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise RunStoreError(
            f"the run history database URL {display_url} is not valid; "
            "check AUTOFLOW_DB_URI (e.g. postgresql://user:{}@host:5432/autoflow)"
        ) from None


def create_engine(url: URL, display_url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created if missing.

    ``read_only``: for SQLite, create no directory and leave the file's journal mode alone
    (the engine still creates the file on first connect: check :func:`sqlite_file` first).
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, display_url, read_only=read_only)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
    try:
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise RunStoreError(
            f"cannot use the run history database at {display_url}: {one_line(exc)}; "
            "AutoFlow supports postgresql:// and sqlite:/// URLs in AUTOFLOW_DB_URI"
        ) from None


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite database URL (None for other databases, in-memory and ``file:`` URIs)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_engine(url: URL, display_url: str, *, read_only: bool) -> Engine:
    path = sqlite_file(url)
    if path is not None and not read_only:
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(
                f"cannot create the directory {directory} for the run history database "
                f"{display_url}: {exc.strerror}; check AUTOFLOW_DB_URI or AUTOFLOW_OUTPUTS_DIR"
            ) from None
    engine = sa.create_engine(
        url, pool_pre_ping=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see below
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        if not read_only:
            _use_wal(dbapi_connection)
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        # through the driver, so count_statements() sees only the statements that matter
        connection.connection.driver_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if write else "BEGIN"
        )

    return engine


def _use_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (a lasting property of the file) unless it already is.

    Switching needs an exclusive lock and SQLite does not wait for it when another new
    connection is switching at the same moment, so retry for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone() in (("wal",), ("memory",)):
                return
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def one_line(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> str:
    """The driver's message for ``exc`` on one line, with any of ``secrets`` masked."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    text = text.split("\n[SQL:", 1)[0].split("\n(Background on this error", 1)[0]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    text = re.sub(r"\s+", " ", text).strip()
    return text[:500] or type(exc).__name__


def unreachable(display_url: str, backend: str, reason: str) -> RunStoreError:
    """The error for "cannot connect", with what to check for this kind of database."""
    if backend == "sqlite":
        hint = (
            "check AUTOFLOW_DB_URI (or AUTOFLOW_OUTPUTS_DIR, where the default SQLite file lives) "
            "and that the file and its directory are writable"
        )
    else:
        hint = (
            "check AUTOFLOW_DB_URI and AUTOFLOW_DB_PASSWORD, and that the database server is "
            "running and accepts connections from this host"
        )
    return RunStoreError(f"cannot reach the run history database at {display_url}: {reason}; {hint}")
