"""SQLSource and check_options, against real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from autoflow.errors import DateSourceError
from autoflow.settings import Secret
from autoflow.sources import DateSource
from autoflow.sources.sql import MAX_VALUES, QUERY_KEY, SQLSource, check_options, check_query, uri_needs_password
from tests.databases import postgres_url_for

#: distinctive enough that finding it anywhere in a message means it leaked (with URL-special characters)
PASSWORD = "Zq9-S3cret:p@ss/w%rd"
JAN_1, JAN_2, JAN_5 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 5)
#: never ends by itself: the statement timeout must stop it
ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT CAST(max(n) AS TEXT) FROM r"
#: sqlparse reads the backslash as escaping the quote (one string, one statement); PostgreSQL and
#: SQLite end the string there, so to them this closes our wrapper and appends writes
SMUGGLED = (
    "SELECT '\\') AS q; COMMIT; SET default_transaction_read_only = off; DELETE FROM {table}; "
    "SELECT * FROM (SELECT 1 --'"
)


def one_line_error(excinfo: pytest.ExceptionInfo[DateSourceError]) -> str:
    """The error's message, checked to be one line without the password and without a chained cause."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert PASSWORD not in message and "Zq9" not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__context__ is None
    return message


# -- SQLite ---------------------------------------------------------------------------------------

ROWS = [
    # day (DATE), stamp (TIMESTAMP), iso (TEXT), n (INTEGER), note (TEXT)
    ("2024-01-02", "2024-01-02 10:00:00", "2024-01-02T10:00:00", 2, "ok"),
    ("2024-01-01", "2024-01-01 23:59:59", "2024-01-01", 1, "ok"),
    ("2024-01-02", "2024-01-02 11:00:00", "2024-01-02 11:00:00", 3, "yesterday"),
    (None, None, None, None, None),
    ("2024-01-05", "2024-01-05 00:00:00", "2024-01-05", 4, "100%"),
]


def make_sqlite(path: Path, rows: Sequence[tuple[object, ...]] = ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE dates (day DATE, stamp TIMESTAMP, iso TEXT, n INTEGER, note TEXT)")
        connection.executemany("INSERT INTO dates VALUES (?, ?, ?, ?, ?)", rows)
    connection.close()
    return path


def row_count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        count = connection.execute("SELECT count(*) FROM dates").fetchone()[0]
    connection.close()
    return int(count)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    return make_sqlite(tmp_path / "dates.db")


@pytest.fixture
def sqlite_uri(sqlite_db: Path) -> str:
    return f"sqlite:///{sqlite_db}"


@pytest.fixture
def close_later() -> Iterator[list[SQLSource]]:
    sources: list[SQLSource] = []
    yield sources
    for source in sources:
        source.close()


def source(close_later: list[SQLSource], uri: str, password: Secret | str | None = None, **kwargs: Any) -> SQLSource:
    made = SQLSource(uri, password, **kwargs)
    close_later.append(made)
    return made


@pytest.mark.parametrize("column", ["day", "stamp", "iso"])
def test_sqlite_table_mode_reads_dates_timestamps_and_iso_text(
    sqlite_uri: str, close_later: list[SQLSource], column: str
) -> None:
    dates = source(close_later, sqlite_uri, table="dates", column=column)

    assert isinstance(dates, DateSource)
    assert dates.available_dates() == {"dates": [JAN_1, JAN_2, JAN_5]}


def test_sqlite_query_mode_with_cte_and_literal_percent_and_colon(sqlite_uri: str, close_later: list[SQLSource]) -> None:
    query = (
        "WITH good AS (SELECT day, note FROM dates WHERE note <> 'yesterday' OR stamp LIKE '%:00:00')\n"
        "SELECT day FROM good WHERE note LIKE '%' -- any note\n;"
    )
    dates = source(close_later, sqlite_uri, query=query)

    assert dates.available_dates() == {QUERY_KEY: [JAN_1, JAN_2, JAN_5]}


def test_the_engine_is_made_on_first_use_reused_and_closed(sqlite_db: Path, close_later: list[SQLSource]) -> None:
    dates = source(close_later, f"sqlite:///{sqlite_db}", table="dates", column="day")
    assert dates._engine is None

    first = dates.available_dates()
    engine = dates._engine
    assert engine is not None and dates.available_dates() == first and dates._engine is engine

    dates.close()
    assert dates._engine is None
    assert dates.available_dates() == first  # connects again


@pytest.mark.parametrize(
    ("kwargs", "first"),
    [
        ({"table": "dates", "column": "n"}, "1"),
        ({"query": "SELECT note FROM dates"}, "'100%'"),
    ],
)
def test_values_that_are_not_dates_are_an_error_naming_the_first_and_how_many(
    sqlite_uri: str, close_later: list[SQLSource], kwargs: dict[str, str], first: str
) -> None:
    dates = source(close_later, sqlite_uri, **kwargs)

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    message = one_line_error(excinfo)
    assert dates.describe() in message
    assert f"the first {first} " in message
    assert "returned 4 values that are not dates" in message  # every non-NULL row: none is silently skipped


def test_a_single_bad_value_among_dates_is_an_error(tmp_path: Path, close_later: list[SQLSource]) -> None:
    db = make_sqlite(tmp_path / "d.db", [("2024-01-01", None, "2024-01-01", 1, None), ("2024-01-02", None, "yesterday", 2, None)])
    dates = source(close_later, f"sqlite:///{db}", table="dates", column="iso")

    with pytest.raises(DateSourceError, match=r"returned 1 value that is not a date, the first 'yesterday' \(str\)"):
        dates.available_dates()


def test_a_query_returning_two_columns_is_an_error(sqlite_uri: str, close_later: list[SQLSource]) -> None:
    dates = source(close_later, sqlite_uri, query="SELECT day, note FROM dates")

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert "returns 2 columns (day, note); it must return exactly one" in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"table": "nodates", "column": "day"}, "no such table: nodates: check 'table' and 'column'"),
        ({"table": "dates", "column": "nope"}, "no such column: dates.nope: check 'table' and 'column'"),
        ({"query": "SELECT nope FROM dates"}, "no such column: nope: check the query"),
        ({"query": "SELECT day FROM dates WHERE"}, "the query is not valid SQL here"),
    ],
)
def test_missing_table_column_or_bad_sql_is_one_line(
    sqlite_uri: str, close_later: list[SQLSource], kwargs: dict[str, str], expected: str
) -> None:
    dates = source(close_later, sqlite_uri, **kwargs)

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    message = one_line_error(excinfo)
    assert message.startswith(dates.describe())
    assert expected in message


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path, close_later: list[SQLSource]) -> None:
    missing = tmp_path / "nowhere" / "dates.db"
    dates = source(close_later, f"sqlite:///{missing}", table="dates", column="day")

    with pytest.raises(DateSourceError, match="does not exist \\(no such file\\)"):
        dates.available_dates()
    assert not missing.exists() and not missing.parent.exists()


def test_a_relative_sqlite_path_is_relative_to_base_dir(
    tmp_path: Path, close_later: list[SQLSource], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "inputs"
    make_sqlite(inputs / "data" / "dates.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not found relative to the working directory

    dates = source(close_later, "sqlite:///data/dates.db", table="dates", column="day", base_dir=inputs)

    assert dates.available_dates() == {"dates": [JAN_1, JAN_2, JAN_5]}
    assert str(inputs / "data" / "dates.db") in dates.describe()


def test_an_absolute_sqlite_path_ignores_base_dir(sqlite_db: Path, tmp_path: Path, close_later: list[SQLSource]) -> None:
    dates = source(close_later, f"sqlite:///{sqlite_db}", table="dates", column="day", base_dir=tmp_path / "other")

    assert dates.available_dates() == {"dates": [JAN_1, JAN_2, JAN_5]}


def test_sqlite_statement_timeout_stops_an_endless_query(sqlite_uri: str, close_later: list[SQLSource]) -> None:
    dates = source(close_later, sqlite_uri, query=ENDLESS, statement_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert time.monotonic() - started < 3
    assert "took longer than 0.3s and was cancelled" in one_line_error(excinfo)
    # the deadline went with that query: the pooled connection runs a long one afterwards
    assert dates._engine is not None
    with dates._engine.connect() as connection:
        counted = connection.exec_driver_sql(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000) SELECT count(*) FROM r"
        ).scalar_one()
    assert counted == 100000


def test_sqlite_a_smuggled_second_statement_is_refused_and_nothing_changes(
    sqlite_db: Path, close_later: list[SQLSource]
) -> None:
    query = SMUGGLED.format(table="dates")
    assert check_query(query) is None  # passes the parser: the database must refuse it
    dates = source(close_later, f"sqlite:///{sqlite_db}", query=query)

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert "more than one statement" in one_line_error(excinfo)
    assert row_count(sqlite_db) == len(ROWS)


def test_sqlite_file_is_opened_read_only(sqlite_db: Path, close_later: list[SQLSource]) -> None:
    dates = source(close_later, f"sqlite:///{sqlite_db}", table="dates", column="day")
    dates.available_dates()
    assert dates._engine is not None

    with dates._engine.connect() as connection:
        with pytest.raises(sa.exc.OperationalError, match="readonly database"):
            connection.exec_driver_sql("DELETE FROM dates")
    assert row_count(sqlite_db) == len(ROWS)


def test_more_distinct_values_than_the_cap_is_an_error(tmp_path: Path, close_later: list[SQLSource]) -> None:
    db = make_sqlite(tmp_path / "d.db", [])
    with sqlite3.connect(db) as connection:  # a timestamp per event: too many distinct values
        connection.execute(
            "INSERT INTO dates (stamp) WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            "SELECT datetime('2024-01-01', '+' || i || ' seconds') FROM s",
            (MAX_VALUES,),
        )
    connection.close()
    dates = source(close_later, f"sqlite:///{db}", table="dates", column="stamp")

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    message = one_line_error(excinfo)
    assert f"more than {MAX_VALUES} distinct values" in message
    assert "e.g. query: SELECT DISTINCT date(stamp) FROM dates" in message


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def pg_template(postgres_database: str) -> str:
    """A uri template for a fresh database with events.calls (date, timestamps, text, int) and a sequence."""
    engine = sa.create_engine(postgres_url_for(postgres_database))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE SCHEMA events")
            connection.exec_driver_sql(
                "CREATE TABLE events.calls (event_date date, ts timestamp, tstz timestamptz, iso text, n integer, note text)"
            )
            connection.exec_driver_sql(
                "INSERT INTO events.calls VALUES "
                "('2024-01-02', '2024-01-02 10:00', '2024-01-02 10:00+00', '2024-01-02', 2, 'ok'), "
                "('2024-01-01', '2024-01-01 23:59', '2024-01-01 12:00+00', '2024-01-01 08:00:00', 1, 'ok'), "
                "('2024-01-05', '2024-01-05 00:00', '2024-01-05 12:00+00', '2024-01-05T00:00:00', 5, '100%%'), "  # %% for psycopg
                "(NULL, NULL, NULL, NULL, NULL, NULL)"
            )
            connection.exec_driver_sql("CREATE SEQUENCE events.ids")
    finally:
        engine.dispose()
    # the test server trusts local connections, so any password works: this one checks it is
    # passed intact (URL-special characters) and never shown
    return postgres_url_for(postgres_database, password="{}").replace("postgresql+psycopg://", "postgresql://")


def pg_count(template: str) -> int:
    engine = sa.create_engine(template.replace("{}", "x").replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT count(*) FROM events.calls").scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("column", ["event_date", "ts", "tstz", "iso"])
def test_postgres_schema_qualified_table_with_date_timestamp_and_text_columns(
    pg_template: str, close_later: list[SQLSource], column: str
) -> None:
    dates = source(close_later, pg_template, Secret(PASSWORD), table="events.calls", column=column)

    assert dates.available_dates() == {"events.calls": [JAN_1, JAN_2, JAN_5]}
    assert dates.available_dates() == {"events.calls": [JAN_1, JAN_2, JAN_5]}  # the pooled connection again


@pytest.mark.postgres
def test_postgres_query_mode_with_cte_percent_and_casts(pg_template: str, close_later: list[SQLSource]) -> None:
    query = (
        "WITH ok AS (SELECT ts FROM events.calls WHERE note LIKE '%' AND iso <> '10:00')\n"
        "SELECT DISTINCT ts::date FROM ok -- one a day\n"
    )
    dates = source(close_later, pg_template, PASSWORD, query=query)

    assert dates.available_dates() == {QUERY_KEY: [JAN_1, JAN_2, JAN_5]}


@pytest.mark.postgres
def test_postgres_values_that_are_not_dates_are_an_error(pg_template: str, close_later: list[SQLSource]) -> None:
    dates = source(close_later, pg_template, PASSWORD, table="events.calls", column="n")

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    message = one_line_error(excinfo)
    assert "returned 3 values that are not dates" in message and "(int)" in message
    assert "postgresql://postgres:***@" in message


@pytest.mark.postgres
def test_postgres_a_write_through_a_function_is_refused_by_the_read_only_transaction(
    pg_template: str, close_later: list[SQLSource]
) -> None:
    dates = source(close_later, pg_template, PASSWORD, query="SELECT CAST(nextval('events.ids') AS text)")

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert "the query tried to write (cannot execute nextval() in a read-only transaction)" in one_line_error(excinfo)


@pytest.mark.postgres
def test_postgres_a_smuggled_second_statement_is_refused_and_nothing_changes(
    pg_template: str, close_later: list[SQLSource]
) -> None:
    query = SMUGGLED.format(table="events.calls")
    assert check_query(query) is None  # passes the parser: the database must refuse it
    dates = source(close_later, pg_template, PASSWORD, query=query)

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert "more than one statement" in one_line_error(excinfo)
    assert pg_count(pg_template) == 4


@pytest.mark.postgres
def test_postgres_statement_timeout_cancels_a_slow_query(pg_template: str, close_later: list[SQLSource]) -> None:
    dates = source(close_later, pg_template, PASSWORD, query=ENDLESS, statement_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert time.monotonic() - started < 5
    assert "took longer than 0.3s and was cancelled" in one_line_error(excinfo)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"table": "events.nocalls", "column": "event_date"}, 'relation "events.nocalls" does not exist: check'),
        ({"table": "noschema.calls", "column": "event_date"}, 'relation "noschema.calls" does not exist: check'),
        ({"table": "events.calls", "column": "nope"}, "column calls.nope does not exist: check 'table' and 'column'"),
        ({"table": "events.Calls", "column": "event_date"}, "(names are case-sensitive)"),
        ({"query": "SELECT nope FROM events.calls"}, 'column "nope" does not exist: check the query'),
    ],
)
def test_postgres_missing_table_or_column_is_one_line(
    pg_template: str, close_later: list[SQLSource], kwargs: dict[str, str], expected: str
) -> None:
    dates = source(close_later, pg_template, PASSWORD, **kwargs)

    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    message = one_line_error(excinfo)
    assert message.startswith(dates.describe())
    assert expected in message
    assert "LINE" not in message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_postgres_fails_fast_without_the_password(close_later: list[SQLSource]) -> None:
    port = free_port()  # closed: nothing listens there
    dates = source(close_later, f"postgresql://reader:{{}}@127.0.0.1:{port}/cdr", PASSWORD, table="events.calls", column="d")

    started = time.monotonic()
    with pytest.raises(DateSourceError) as excinfo:
        dates.available_dates()

    assert time.monotonic() - started < 5
    message = one_line_error(excinfo)
    assert message.startswith(f"SQL database postgresql://reader:***@127.0.0.1:{port}/cdr (events.calls.d): cannot connect (")
    assert "check the uri and its password" in message


def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout(close_later: list[SQLSource]) -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        dates = source(
            close_later, f"postgresql://reader:{{}}@127.0.0.1:{port}/cdr", PASSWORD,
            table="calls", column="d", connect_timeout=1,
        )

        started = time.monotonic()
        with pytest.raises(DateSourceError) as excinfo:
            dates.available_dates()

    assert time.monotonic() - started < 6  # libpq waits at least 2 s
    assert "cannot connect (connection timeout expired)" in one_line_error(excinfo)


# -- describe, repr, constructor checks ---------------------------------------------------------


def test_describe_and_repr_hide_the_password() -> None:
    uri = "postgresql://reader:{}@db.example.org:5432/cdr"
    by_table = SQLSource(uri, Secret(PASSWORD), table="events.calls", column="event_date")
    by_query = SQLSource(uri, PASSWORD, query="SELECT DISTINCT event_date FROM events.calls")

    assert by_table.describe() == "SQL database postgresql://reader:***@db.example.org:5432/cdr (events.calls.event_date)"
    assert by_query.describe() == "SQL database postgresql://reader:***@db.example.org:5432/cdr (query)"
    for shown in (by_table.describe(), repr(by_table), by_query.describe(), repr(by_query), str(by_query.__dict__)):
        assert PASSWORD not in shown and "Zq9" not in shown
    assert repr(by_table) == (
        "SQLSource('postgresql://reader:***@db.example.org:5432/cdr', table='events.calls', column='event_date')"
    )


@pytest.mark.parametrize(
    ("uri", "password", "kwargs", "expected"),
    [
        ("postgresql://r:{}@h/db", None, {"table": "t", "column": "c"}, "has '{}' for a password but no password was given"),
        ("postgresql://r@h/db", PASSWORD, {"table": "t", "column": "c"}, "whose uri has no '{}' for it"),
        ("postgresql://r:" + PASSWORD.replace("@", "%40").replace("/", "%2F") + "@h/db", None, {"table": "t", "column": "c"},
         "has a password written in it"),
        ("postgresql://r@h/db", None, {"table": "t"}, "'table' needs a 'column'"),
        ("postgresql://r@h/db", None, {"query": "SELECT 1; DROP TABLE x"}, "the query has 2 statements"),
        ("postgresql://r@h/db", None, {"query": "x", "table": "t", "column": "c"}, "not both"),
        ("mysql://r@h/db", None, {"table": "t", "column": "c"}, "is for mysql"),
    ],
)
def test_the_constructor_refuses_what_check_options_refuses(
    uri: str, password: str | None, kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(DateSourceError) as excinfo:
        SQLSource(uri, password, **kwargs)

    message = str(excinfo.value)
    assert "\n" not in message and "Zq9" not in message
    assert expected in message


# -- check_options and check_query ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"uri": "postgresql://reader:{}@db.example.org:5432/cdr", "password_secret": "CDR_DB_PASSWORD",
         "table": "events.calls", "column": "event_date"},
        {"uri": "postgres://reader@db.example.org/cdr?sslmode=require", "query": "SELECT DISTINCT event_date FROM events.calls WHERE complete"},
        {"uri": "postgresql+psycopg://reader:{}@db/cdr", "password_secret": "_x1", "table": "calls", "column": "day"},
        {"uri": "sqlite:///data/dates.db", "query": "WITH d AS (SELECT day FROM t) SELECT day FROM d;", "type": "sql"},
        {"uri": "sqlite:////abs/dates.db", "table": "main.t", "column": "Day Of Data"},
    ],
)
def test_check_options_accepts_good_blocks(options: dict[str, str]) -> None:
    assert check_options(options) == []


@pytest.mark.parametrize(
    ("options", "key", "expected"),
    [
        ({"table": "t", "column": "c"}, None, "a 'sql' source needs a 'uri', e.g. postgresql://reader:{}@"),
        ({"uri": "", "table": "t", "column": "c"}, "uri", "the uri is empty"),
        ({"uri": 5, "table": "t", "column": "c"}, "uri", "'uri' must be a string"),
        ({"uri": "not a url", "table": "t", "column": "c"}, "uri", "is not a database URL SQLAlchemy understands"),
        ({"uri": "mysql+pymysql://r@h/db", "table": "t", "column": "c"}, "uri", "is for mysql; a 'sql' source reads PostgreSQL"),
        ({"uri": "postgresql+psycopg2://r@h/db", "table": "t", "column": "c"}, "uri", "AutoFlow reads PostgreSQL with psycopg 3"),
        ({"uri": "sqlite://", "table": "t", "column": "c"}, "uri", "in-memory SQLite database"),
        ({"uri": "sqlite:///d.db?mode=rwc", "table": "t", "column": "c"}, "uri", "write only the file's path"),
        ({"uri": "postgresql://r:{}@h/db", "table": "t", "column": "c"}, "uri", "add e.g. password_secret: CDR_DB_PASSWORD"),
        ({"uri": "postgresql://{}@h/db", "password_secret": "P", "table": "t", "column": "c"}, "uri",
         "goes once, right after the user name"),
        ({"uri": "postgresql://r:{}@h/{}", "password_secret": "P", "table": "t", "column": "c"}, "uri", "goes once"),
        ({"uri": "postgresql://r:{password}@h/db", "table": "t", "column": "c"}, "uri", "write the password placeholder as '{}'"),
        ({"uri": "postgresql://r:hunter2@h/db", "table": "t", "column": "c"}, "uri",
         "has a password written in it; put '{}' in its place"),
        ({"uri": "postgresql://r@h/db?password=hunter2", "table": "t", "column": "c"}, "uri", "a password in its options"),
        ({"uri": "postgresql://r@h/db", "password_secret": "P", "table": "t", "column": "c"}, "password_secret",
         "the uri has no '{}' where the password goes"),
        ({"uri": "postgresql://r:{}@h/db", "password_secret": "1BAD", "table": "t", "column": "c"}, "password_secret",
         "must name a secret"),
        ({"uri": "postgresql://r:{}@h/db", "password_secret": ["P"], "table": "t", "column": "c"}, "password_secret",
         "not list"),
        ({"uri": "sqlite:///d.db"}, None, "needs 'table' and 'column' (e.g. table: events.calls, column: event_date) or a 'query'"),
        ({"uri": "sqlite:///d.db", "table": "t", "column": "c", "query": "SELECT 1"}, "query", "not both"),
        ({"uri": "sqlite:///d.db", "table": "t"}, "table", "'table' needs a 'column'"),
        ({"uri": "sqlite:///d.db", "column": "c"}, "column", "'column' needs a 'table'"),
        ({"uri": "sqlite:///d.db", "table": "a.b.c", "column": "c"}, "table", "write 'table' or 'schema.table'"),
        ({"uri": "sqlite:///d.db", "table": '"T"', "column": "c"}, "table", "write the name without them"),
        ({"uri": "sqlite:///d.db", "table": "t", "column": "t.c"}, "column", "is not a valid name"),
        ({"uri": "sqlite:///d.db", "table": "t", "column": 3}, "column", "'column' must be a string"),
        ({"uri": "sqlite:///d.db", "query": "DELETE FROM t"}, "query", "the query is a DELETE statement; a date source only reads"),
    ],
)
def test_check_options_reports_each_problem_at_its_key(options: dict[str, object], key: str | None, expected: str) -> None:
    problems = check_options(options)

    assert any(k == key and expected in message for k, message in problems), problems
    for _, message in problems:
        assert "\n" not in message and "hunter2" not in message
        assert message[0].islower() or message[0] == "'"


def test_check_options_names_the_driver_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed

    problems = check_options({"uri": "postgresql://r@h/db", "table": "t", "column": "c"})

    assert problems == [("uri", "the uri postgresql://r@h/db needs the psycopg driver, which is not installed: pip install 'psycopg[binary]'")]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT DISTINCT event_date FROM events.calls WHERE complete",
        "select day from t;",
        "  SELECT day FROM t ;  -- trailing comment",
        "WITH x AS (SELECT day FROM t) SELECT day FROM x",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
        "SELECT day FROM a UNION SELECT day FROM b",
        "SELECT day FROM t WHERE note <> 'delete; drop table t'",
        'SELECT "update" FROM t',
        "/* dates */ SELECT day FROM t",
    ],
)
def test_check_query_accepts_one_select(query: str) -> None:
    assert check_query(query) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "the query is empty"),
        ("  -- nothing\n", "the query is empty"),
        ("INSERT INTO t VALUES ('2024-01-01')", "is an INSERT statement"),
        ("UPDATE t SET day = NULL", "is an UPDATE statement"),
        ("DELETE FROM t", "is a DELETE statement"),
        ("DROP TABLE t", "is a DROP statement"),
        ("CREATE TABLE x (d date)", "is a CREATE statement"),
        ("TRUNCATE t", "is a TRUNCATE statement"),
        ("SELECT 1; DROP TABLE x", "the query has 2 statements"),
        ("SELECT 1; SELECT 2;", "the query has 2 statements"),
        ("WITH gone AS (DELETE FROM t RETURNING day) SELECT day FROM gone", "the query contains DELETE"),
        ("SELECT day INTO copy_of_t FROM t", "contains INTO (SELECT ... INTO creates a table)"),
        ("SELECT day FROM t FOR UPDATE", "contains UPDATE"),
        ("EXPLAIN ANALYZE SELECT day FROM t", "is not a SELECT"),
        ("PRAGMA query_only = OFF", "is not a SELECT"),
        ("ATTACH DATABASE 'x.db' AS x", "is not a SELECT"),
        ("COPY t TO '/tmp/x'", "is not a SELECT"),
    ],
)
def test_check_query_refuses_and_says_why(query: str, expected: str) -> None:
    problem = check_query(query)

    assert problem is not None and expected in problem, problem
    assert "\n" not in problem


def test_refused_queries_are_refused_before_reaching_the_database(sqlite_db: Path) -> None:
    with pytest.raises(DateSourceError, match="the query contains DELETE"):
        SQLSource(f"sqlite:///{sqlite_db}", None, query="WITH g AS (DELETE FROM dates RETURNING day) SELECT day FROM g")
    assert row_count(sqlite_db) == len(ROWS)


def test_uri_needs_password() -> None:
    assert uri_needs_password("postgresql://reader:{}@db/cdr")
    assert not uri_needs_password("postgresql://reader@db/cdr")
