"""Available dates from a SQL database: the distinct values of a date column, or of one query.

In workflows.yml::

    source:
      type: sql
      uri: postgresql://reader:{}@db.example.org:5432/cdr   # '{}': the password secret
      password_secret: CDR_DB_PASSWORD
      table: events.calls        # with column, or instead of both:
      column: event_date         # query: "SELECT DISTINCT event_date FROM events.calls WHERE complete"

PostgreSQL (through psycopg 3) and SQLite files are supported: for those AutoFlow can promise
that a query only reads and never hangs a tick. A query is refused unless it is one SELECT (or
``WITH ... SELECT``); it then runs as the body of ``SELECT * FROM (query) LIMIT n`` — one
prepared statement, so nothing can be appended — inside a read-only transaction (PostgreSQL,
with ``default_transaction_read_only`` too) or on a file opened read-only (SQLite), under a
statement timeout. These guard against mistakes; a database user that may only read is still
the real protection.

Values may be dates, timestamps (their date is taken) or ISO strings; NULLs are ignored and any
other value is an error, never skipped. Every failure is one :class:`DateSourceError` line that
names the source by its masked URI and never contains the password.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
import sqlparse
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlparse import tokens as T

from autoflow.errors import DateSourceError
from autoflow.settings import Secret, mask_url
from autoflow.store.engine import one_line

__all__ = [
    "MAX_VALUES",
    "OPTION_KEYS",
    "QUERY_KEY",
    "SQLSource",
    "check_options",
    "check_query",
    "uri_needs_password",
]

#: the keys a ``type: sql`` source block may have besides ``type``
OPTION_KEYS = ("uri", "password_secret", "table", "column", "query")
#: the data kind a query-mode source reports its dates under (table mode: the table's name)
QUERY_KEY = "query"
#: most distinct values a source may return (a day each for 270 years); more means a timestamp per event
MAX_VALUES = 100_000
PASSWORD_PLACEHOLDER = "{}"

_URI_EXAMPLE = "e.g. postgresql://reader:{}@db.example.org:5432/cdr or sqlite:///data/dates.db"
_QUERY_EXAMPLE = "e.g. SELECT DISTINCT event_date FROM events.calls"
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: a ``?password=...`` (or ``sslpassword=``...) option in a URL, whose value must not be shown
_PASSWORD_OPTION = re.compile(r"([?&][^=&#]*password[^=&#]*=)[^&#]*", re.IGNORECASE)
#: stands in for ``{}`` while a template is parsed, to find where the placeholder is
_MARKER = "autoflow-password-placeholder"
#: SQLite executes this many virtual-machine steps between checks of the statement deadline
_SQLITE_PROGRESS_STEPS = 1000
#: longest piece of a value or a driver message quoted in our messages
_MAX_QUOTED = 80
#: how to install a missing driver
_INSTALL = {"psycopg": "pip install 'psycopg[binary]'"}


def uri_needs_password(uri: str) -> bool:
    """True when ``uri`` has the ``{}`` placeholder for the password secret."""
    return PASSWORD_PLACEHOLDER in uri


def _display(uri: str) -> str:
    """``uri`` as logs may show it: the placeholder and any written password as ``***``."""
    masked = mask_url(uri.replace(PASSWORD_PLACEHOLDER, "***"))
    return _PASSWORD_OPTION.sub(r"\1***", masked)


def _normalised(url: URL) -> URL:
    """``postgres://`` and ``postgresql://`` as psycopg 3, the driver AutoFlow ships."""
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+psycopg")
    return url



def _parse_uri(uri: str) -> tuple[URL | None, str | None]:
    """(the template parsed, placeholder kept in the password), or (None, what is wrong with it)."""
    if not uri.strip():
        return None, f"the uri is empty; give the database's SQLAlchemy URL, {_URI_EXAMPLE}"
    shown = _display(uri)
    count = uri.count(PASSWORD_PLACEHOLDER)
    try:
        url = make_url(uri.replace(PASSWORD_PLACEHOLDER, _MARKER))
    except (sa.exc.ArgumentError, ValueError):
        return None, f"the uri {shown} is not a database URL SQLAlchemy understands; write it as {_URI_EXAMPLE}"
    if count and (count > 1 or url.password != _MARKER):
        return None, (
            f"'{{}}' in the uri {shown} stands for the password and goes once, right after the user "
            "name, e.g. postgresql://reader:{}@db.example.org:5432/cdr"
        )
    if count == 0 and url.password:
        if "{" in url.password or "}" in url.password:
            return None, "write the password placeholder as '{}' (empty braces), e.g. postgresql://reader:{}@db.example.org:5432/cdr"
        return None, (
            f"the uri {shown} has a password written in it; put '{{}}' in its place and name the "
            "secret that holds it with 'password_secret', e.g. uri: postgresql://reader:{}@db.example.org:5432/cdr "
            "with password_secret: CDR_DB_PASSWORD"
        )
    if any("password" in key.lower() for key in url.query):
        return None, (
            f"the uri {shown} has a password in its options ('password='); write '{{}}' after the "
            "user name instead and name the secret with 'password_secret'"
        )
    url = _normalised(url)
    backend = url.get_backend_name()
    # the default driver is only known once the dialect is loaded, which fails for unknown backends
    driver = url.get_driver_name() if backend in ("sqlite", "postgresql") else ""
    if backend == "sqlite":
        problem = _sqlite_problem(url, shown)
    elif backend == "postgresql":
        problem = None if driver == "psycopg" else (
            f"the uri {shown} asks for the {driver} driver; AutoFlow reads PostgreSQL with psycopg 3 "
            "(it can run a query as a single read-only statement): write postgresql://..."
        )
    else:
        problem = (
            f"the uri {shown} is for {backend}; a 'sql' source reads PostgreSQL (postgresql://...) "
            f"or SQLite files (sqlite:///...), {_URI_EXAMPLE}"
        )
    if problem is None:
        try:
            url.get_dialect().import_dbapi()
        except ImportError:
            how = _INSTALL.get(driver, f"install the {driver} package")
            problem = f"the uri {shown} needs the {driver} driver, which is not installed: {how}"
    return (None, problem) if problem else (url, None)


def _sqlite_problem(url: URL, shown: str) -> str | None:
    if url.get_driver_name() != "pysqlite":
        return f"the uri {shown} asks for the {url.get_driver_name()} driver; write sqlite:///path/to/file.db"
    database = url.database or ""
    if not database or database == ":memory:":
        return (
            f"the uri {shown} is an in-memory SQLite database, which holds no data; give a file, "
            "e.g. sqlite:///data/dates.db (relative to the inputs directory) or sqlite:////abs/path/dates.db"
        )
    if database.startswith("file:") or url.query:
        return (
            f"the uri {shown} has SQLite options; write only the file's path, e.g. sqlite:///data/dates.db "
            "(AutoFlow opens it read-only itself)"
        )
    if url.username or url.password or url.host:
        return f"the uri {shown} has a user or host, which SQLite files do not; write sqlite:///path/to/file.db"
    return None


def _statement(query: str) -> tuple[str | None, str | None]:
    """(the one SELECT in ``query`` without its ';', None) or (None, why the query is refused)."""
    statements = [s for s in sqlparse.parse(query) if not _is_blank(s)]
    if not statements:
        return None, f"the query is empty; write one SELECT returning the dates, {_QUERY_EXAMPLE}"
    if len(statements) > 1:
        return None, (
            f"the query has {len(statements)} statements; write exactly one SELECT "
            f"(no ';' between statements), {_QUERY_EXAMPLE}"
        )
    statement = statements[0]
    kind = statement.get_type()
    if kind != "SELECT":
        what = "is not a SELECT" if kind == "UNKNOWN" else f"is a{'n' if kind[0] in 'AEIOU' else ''} {kind} statement"
        return None, (
            f"the query {what}; a date source only reads: write one SELECT (or WITH ... SELECT), {_QUERY_EXAMPLE}"
        )
    for token in statement.flatten():
        word = token.normalized
        writes = token.ttype in (T.Keyword.DML, T.Keyword.DDL, T.Keyword.DCL) and word != "SELECT"
        if writes or (token.ttype in T.Keyword and word == "INTO"):
            why = " (SELECT ... INTO creates a table)" if word == "INTO" else ""
            return None, (
                f"the query contains {word}{why}; a date source only reads: write one SELECT without "
                f"INSERT, UPDATE, DELETE, INTO or DDL (a column named like a keyword goes in double quotes, \"{word.lower()}\")"
            )
    body: list[str] = []
    for token in statement.flatten():  # up to the ';' that ends the statement (it may sit in a WHERE group)
        if token.ttype is T.Punctuation and token.value == ";":
            break
        body.append(token.value)
    return "".join(body).strip(), None


def _is_blank(statement: sqlparse.sql.Statement) -> bool:
    return all(
        t.is_whitespace or t.ttype in T.Comment or (t.ttype is T.Punctuation and t.value == ";")
        for t in statement.flatten()
    )


def check_query(query: str) -> str | None:
    """Why ``query`` is refused (one line), or None when it is one read-only SELECT."""
    return _statement(query)[1]


def _name_problem(key: str, value: str, *, parts: int) -> str | None:
    example = "events.calls" if key == "table" else "event_date"
    if not value.strip():
        return f"'{key}' is empty; give the {key}'s name, e.g. {example}"
    if any(q in value for q in "\"'`[]"):
        return (
            f"'{key}' {value!r} has quotes; write the name without them, e.g. {example} "
            "(AutoFlow quotes names itself, and they are case-sensitive)"
        )
    pieces = value.split(".")
    if len(pieces) > parts or not all(p.strip() for p in pieces):
        form = "'table' or 'schema.table'" if key == "table" else "one name, without a table in front"
        return f"'{key}' {value!r} is not a valid name; write {form}, e.g. {example}"
    return None


def check_options(options: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Problems with a ``type: sql`` source block as written: (the key it is about or None, message).

    Keys other than :data:`OPTION_KEYS` (``type``...) are left to the caller.
    """
    problems: list[tuple[str | None, str]] = []
    uri = options.get("uri")
    if "uri" not in options:
        problems.append((None, f"a 'sql' source needs a 'uri', {_URI_EXAMPLE}"))
    elif not isinstance(uri, str):
        problems.append(("uri", f"'uri' must be a string, {_URI_EXAMPLE}, not {type(uri).__name__}"))
    else:
        problem = _parse_uri(uri)[1]
        if problem:
            problems.append(("uri", problem))

    secret = options.get("password_secret")
    if "password_secret" in options:
        if not isinstance(secret, str) or not _SECRET_NAME.fullmatch(secret):
            shown = repr(secret) if isinstance(secret, str) else type(secret).__name__
            problems.append((
                "password_secret",
                f"'password_secret' must name a secret (letters, digits, '_', not starting with a digit), "
                f"e.g. CDR_DB_PASSWORD, not {shown}",
            ))
        elif isinstance(uri, str) and not uri_needs_password(uri):
            problems.append((
                "password_secret",
                "'password_secret' is given but the uri has no '{}' where the password goes; "
                "write e.g. postgresql://reader:{}@db.example.org:5432/cdr, or remove 'password_secret'",
            ))
    elif isinstance(uri, str) and uri_needs_password(uri):
        problems.append((
            "uri",
            "the uri has '{}' for a password but no 'password_secret' names the secret holding it; "
            "add e.g. password_secret: CDR_DB_PASSWORD (a Docker secret or an environment variable)",
        ))
    return problems + _mode_problems(options)


def _mode_problems(options: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Problems with what is read: exactly one of 'query' or 'table' and 'column', each usable."""
    problems: list[tuple[str | None, str]] = []
    examples = {"table": "events.calls", "column": "event_date", "query": _QUERY_EXAMPLE[5:]}
    strings: dict[str, str] = {}
    for key, example in examples.items():
        if key in options:
            value = options[key]
            if isinstance(value, str):
                strings[key] = value
            else:
                problems.append((key, f"'{key}' must be a string such as {example!r}, not {type(value).__name__}"))
    given = {key for key in examples if key in options}
    if "query" in given and given & {"table", "column"}:
        problems.append((
            "query",
            "give either 'query' or 'table' and 'column', not both (a query can select from the table itself)",
        ))
    elif not given:
        problems.append((
            None,
            "a 'sql' source needs 'table' and 'column' (e.g. table: events.calls, column: event_date) "
            f"or a 'query' ({_QUERY_EXAMPLE})",
        ))
    elif "table" in given and "column" not in given:
        problems.append(("table", "'table' needs a 'column' naming the column that holds the dates, e.g. column: event_date"))
    elif "column" in given and "table" not in given:
        problems.append(("column", "'column' needs a 'table' naming the table that holds it, e.g. table: events.calls"))
    for key, parts in (("table", 2), ("column", 1)):
        if key in strings:
            problem = _name_problem(key, strings[key], parts=parts)
            if problem:
                problems.append((key, problem))
    if "query" in strings:
        problem = check_query(strings["query"])
        if problem:
            problems.append(("query", problem))
    return problems


def _to_date(value: object) -> date | None:
    """A date, the date of a timestamp, or an ISO date/datetime string as a date; None otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()  # char(n) columns come padded
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


class SQLSource:
    """The distinct dates in a column (``table``/``column``) or returned by one ``query``.

    ``uri_template`` is a SQLAlchemy URL (PostgreSQL or a SQLite file) where ``{}`` stands for
    ``password``; a relative SQLite path is relative to ``base_dir`` (the inputs directory).
    The engine is made on first use and kept (:meth:`close` disposes of it).
    """

    def __init__(
        self,
        uri_template: str,
        password: Secret | str | None,
        *,
        table: str | None = None,
        column: str | None = None,
        query: str | None = None,
        connect_timeout: float = 10,
        statement_timeout: float = 60,
        base_dir: Path | None = None,
    ) -> None:
        self.display_uri = _display(uri_template)
        secret = password.get() if isinstance(password, Secret) else password
        if uri_needs_password(uri_template) and secret is None:
            raise DateSourceError(
                f"the SQL database uri {self.display_uri} has '{{}}' for a password but no password "
                "was given: check that the secret the source's password_secret names is set"
            )
        if not uri_needs_password(uri_template) and secret is not None:
            raise DateSourceError(
                f"a password was given for the SQL database {self.display_uri}, whose uri has no '{{}}' for it"
            )
        url, problem = _parse_uri(uri_template)
        mode = {k: v for k, v in (("table", table), ("column", column), ("query", query)) if v is not None}
        problems = ([problem] if problem else []) + [message for _, message in _mode_problems(mode)]
        if problems:
            raise DateSourceError(f"SQL database source {self.display_uri}: " + "; ".join(problems))
        assert url is not None
        if not (connect_timeout > 0 and statement_timeout > 0):
            raise ValueError(
                f"timeouts must be greater than 0, not connect_timeout={connect_timeout!r}, "
                f"statement_timeout={statement_timeout!r}"
            )
        self._password = Secret(secret) if secret is not None else None
        self.table = table
        self.column = column
        self.query = query
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.backend = url.get_backend_name()
        self.sqlite_path: Path | None = None
        if self.backend == "sqlite":
            path = Path(url.database or "")
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            self.sqlite_path = path
            self.display_uri = f"sqlite:///{path}"
        self._url = url.set(password=secret) if secret is not None else url
        self._body = _statement(query)[0] if query is not None else None
        self.label = table if table is not None else QUERY_KEY
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    # -- the DateSource protocol ----------------------------------------------------------------

    def describe(self) -> str:
        what = f"{self.table}.{self.column}" if self.table is not None else "query"
        return f"SQL database {self.display_uri} ({what})"

    def __repr__(self) -> str:
        if self.table is not None:
            return f"SQLSource({self.display_uri!r}, table={self.table!r}, column={self.column!r})"
        return f"SQLSource({self.display_uri!r}, query={_quote(self.query or '')!r})"

    def available_dates(self) -> dict[str, list[date]]:
        """``{label: sorted distinct dates}``, label the table's name or ``"query"``."""
        values = self._fetch()
        dates: set[date] = set()
        bad: list[object] = []
        for value in values:
            if value is None:
                continue
            day = _to_date(value)
            if day is None:
                bad.append(value)
            else:
                dates.add(day)
        if bad:
            first = min(bad, key=lambda v: (type(v).__name__, str(v)))  # the same one every tick
            raise DateSourceError(
                f"{self.describe()} returned {len(bad)} "
                f"{'values that are not dates' if len(bad) > 1 else 'value that is not a date'}, "
                f"the first {_quote(repr(first))} "
                f"({type(first).__name__}): the {'column' if self.table else 'query'} must give dates, "
                "timestamps or ISO 'YYYY-MM-DD' strings (NULLs are ignored)"
            )
        return {self.label: sorted(dates)}

    def close(self) -> None:
        """Close the pooled connections (a later call connects again)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> SQLSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the database boundary ------------------------------------------------------------------

    # Each failure sets `problem` and is raised after its `except` block, so the DateSourceError
    # has no __context__ that could carry the driver's exception (and the URL) along.

    def _engine_for_use(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._make_engine()
            return self._engine

    def _make_engine(self) -> Engine:
        pool = {"poolclass": sa.pool.QueuePool, "pool_size": 1, "max_overflow": 2, "pool_pre_ping": True}
        if self.sqlite_path is not None:
            uri = f"{self.sqlite_path.absolute().as_uri()}?mode=ro"
            timeout = self.statement_timeout

            def connect() -> sqlite3.Connection:
                connection = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
                connection.execute("PRAGMA query_only = ON")
                return connection

            return sa.create_engine("sqlite+pysqlite://", creator=connect, **pool)
        query = self._url.query
        options = query.get("options", "")
        options = " ".join(options) if isinstance(options, tuple) else options
        connect_args: dict[str, Any] = {
            "options": (
                f"{options} -c statement_timeout={max(1, int(self.statement_timeout * 1000))} "
                "-c default_transaction_read_only=on"
            ).strip(),
        }
        if "connect_timeout" not in query:
            connect_args["connect_timeout"] = max(1, math.ceil(self.connect_timeout))
        return sa.create_engine(self._url, connect_args=connect_args, **pool)

    def _fetch(self) -> Sequence[object]:
        if self.sqlite_path is not None and not self.sqlite_path.is_file():
            raise DateSourceError(
                f"{self.describe()}: the SQLite file {self.sqlite_path} does not exist (no such file): "
                "check the uri (a relative path is relative to the inputs directory) and that the data is mounted"
            )
        secrets = (self._password.get(),) if self._password is not None else ()
        problem: str
        try:
            connection = self._engine_for_use().connect()
        except Exception as exc:  # the boundary: no driver or SQLAlchemy type escapes
            reason = _quote_reason(exc, secrets)
            problem = (
                f"{self.describe()}: cannot connect ({reason}): check the uri and its password, "
                "and that the database server is running and accepts connections from this host"
            )
        else:
            timed_out = [False]
            try:
                with connection:
                    return self._run(connection, timed_out)
            except DateSourceError:
                raise
            except Exception as exc:
                problem = self._failure(exc, secrets, timed_out=timed_out[0])
        raise DateSourceError(problem)

    def _run(self, connection: Connection, timed_out: list[bool]) -> Sequence[object]:
        """The values, in a transaction that is rolled back (never committed) when ``connection`` closes."""
        limit = MAX_VALUES + 1
        result: sa.CursorResult[Any]
        if self.sqlite_path is None:
            connection.execution_options(postgresql_readonly=True)
        with self._sqlite_deadline(connection, timed_out):
            if self._body is not None:
                # one prepared statement with a parameter: PostgreSQL and sqlite3 refuse a second one
                if self.sqlite_path is not None:
                    sql = f"SELECT * FROM (\n{self._body}\n) AS autoflow_dates LIMIT ?"
                    result = connection.exec_driver_sql(sql, (limit,))
                else:
                    body = self._body.replace("%", "%%")  # psycopg's placeholders start with '%'
                    sql = f"SELECT * FROM (\n{body}\n) AS autoflow_dates LIMIT %(limit)s"
                    result = connection.exec_driver_sql(sql, {"limit": limit})
                columns = list(result.keys())
                if len(columns) != 1:
                    result.close()
                    names = ", ".join(_quote(str(c)) for c in columns) or "none"
                    raise DateSourceError(
                        f"{self.describe()}: the query returns {len(columns)} columns ({names}); "
                        f"it must return exactly one, the dates, {_QUERY_EXAMPLE}"
                    )
            else:
                assert self.table is not None and self.column is not None
                schema, _, name = self.table.rpartition(".")
                column: sa.ColumnClause[Any] = sa.column(self.column)
                table = sa.table(name, column, schema=schema or None)
                result = connection.execute(sa.select(column).distinct().where(column.is_not(None)).limit(limit))
            values = [row[0] for row in result.fetchall()]
        if len(values) > MAX_VALUES:
            where = (self.column, self.table) if self.table is not None else ("event_time", "events.calls")
            day = f"date({where[0]})" if self.sqlite_path is not None else f"CAST({where[0]} AS DATE)"
            if self.table is not None:
                what = f"column {self.column!r} has more than {MAX_VALUES} distinct values"
                fix = f"use a query that gives each day once, e.g. query: SELECT DISTINCT {day} FROM {where[1]}"
            else:
                what = f"query returns more than {MAX_VALUES} rows"
                fix = f"return each day once, e.g. SELECT DISTINCT {day} FROM {where[1]}"
            raise DateSourceError(f"{self.describe()}: the {what} (a timestamp per event?): {fix}")
        return values

    @contextmanager
    def _sqlite_deadline(self, connection: Connection, timed_out: list[bool]) -> Iterator[None]:
        """SQLite's statement timeout: interrupt the query once ``statement_timeout`` has passed."""
        if self.sqlite_path is None:
            yield
            return
        deadline = time.monotonic() + self.statement_timeout

        def past_deadline() -> bool:
            timed_out[0] = time.monotonic() > deadline
            return timed_out[0]

        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.set_progress_handler(past_deadline, _SQLITE_PROGRESS_STEPS)
        try:
            yield
        finally:
            driver.set_progress_handler(None, _SQLITE_PROGRESS_STEPS)

    def _failure(self, exc: Exception, secrets: tuple[str, ...], *, timed_out: bool) -> str:
        """The one-line message for a failed query."""
        where = self.describe()
        reason = _quote_reason(exc, secrets)
        original = getattr(exc, "orig", None)
        state = getattr(original, "sqlstate", None) or ""
        text = reason.lower()
        check = "check 'table' and 'column'" if self.table is not None else "check the query"
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return (
                f"{where}: lost the connection ({reason}): check the database server is running "
                "and accepts connections from this host"
            )
        if timed_out or state == "57014":
            return (
                f"{where}: the query took longer than {self.statement_timeout:g}s and was cancelled: "
                "check the database is not overloaded, and index the date column or simplify the query"
            )
        if "multiple commands" in text or "one statement at a time" in text:
            return f"{where}: the query holds more than one statement ({reason}); a date source runs one SELECT: {check}"
        if state in ("42P01", "3F000", "42703") or "no such table" in text or "no such column" in text:
            return f"{where}: {reason}: {check} (names are case-sensitive)"
        if state == "25006" or "readonly database" in text or "read-only" in text:
            return f"{where}: the query tried to write ({reason}); a date source only reads: {check}"
        if state == "42501":
            return f"{where}: {reason}: grant the database user SELECT on what the source reads"
        if state.startswith("42") or "syntax error" in text or isinstance(exc, sa.exc.ProgrammingError):
            return f"{where}: the query is not valid SQL here ({reason}): {check}"
        return f"{where}: the query failed ({type(exc).__name__}: {reason}): {check} and the database's health"


def _quote_reason(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The driver's message on one line, without secrets or PostgreSQL's ``LINE 2: ... ^`` excerpt."""
    reason = re.sub(r" LINE \d+: .*$", "", one_line(exc, secrets=secrets))
    return reason if len(reason) <= 300 else reason[:299] + "…"
