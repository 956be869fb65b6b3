"""The run history on real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql

from autoflow.errors import RunStoreError
from autoflow.parameters import params_hash
from autoflow.store import Attempt, RunKey, RunStore, owner_id
from autoflow.store.migrate import head_revision
from autoflow.store.schema import VERSION_TABLE, metadata
from tests.databases import admin_connection, postgres_url_for

DAY = dt.date(2016, 1, 1)
# Children start from a clean server process, so they inherit no pooled connections; it
# imports this module once, so each child starts quickly.
SPAWN = multiprocessing.get_context("forkserver")
SPAWN.set_forkserver_preload([__name__])
ELSEWHERE = "elsewhere.example:4242:2020-01-01T00:00:00+00:00"


def claim(store: RunStore, **overrides: Any) -> Attempt | None:
    """``store.claim`` with defaults for whatever the test does not care about."""
    arguments: dict[str, Any] = {
        "workflow": "wf",
        "parameters": {},
        "reference_date": DAY,
        "date_ranges": [(DAY - dt.timedelta(days=6), DAY)],
        "previous_attempt": 0,
        "owner": owner_id(),
    }
    arguments.update(overrides)
    return store.claim(**arguments)


def must_claim(store: RunStore, **overrides: Any) -> Attempt:
    attempt = claim(store, **overrides)
    assert attempt is not None
    return attempt


def version_rows(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


# --- helpers run in spawned processes (module level so they can be pickled) -------------------


def upgrade_in_child(url: str, barrier: Any) -> None:
    store = RunStore(url)
    barrier.wait()
    store.upgrade()
    store.close()


def claim_in_child(url: str, days: list[dt.date], barrier: Any, results: Any) -> None:
    store = RunStore(url)
    store.history(limit=1)  # connect before the race starts
    barrier.wait()
    won = [day for day in days if claim(store, reference_date=day) is not None]
    store.close()
    results.put(won)


def report_owner_id(results: Any) -> None:
    results.put(owner_id())


def run_children(target: Any, *args: Any, count: int = 2) -> None:
    processes = [SPAWN.Process(target=target, args=args) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * count


# --- schema ------------------------------------------------------------------------------------


def test_upgrade_is_idempotent(db_url: str) -> None:
    with RunStore(db_url) as store:
        store.upgrade()
        store.upgrade()
        must_claim(store)
    with RunStore(db_url) as store:
        store.upgrade()
        assert len(store.history()) == 1
    assert version_rows(db_url) == [head_revision()]


def test_upgrade_from_two_processes_at_once(db_url: str) -> None:
    barrier = SPAWN.Barrier(2)
    run_children(upgrade_in_child, db_url, barrier)
    assert version_rows(db_url) == [head_revision()]
    with RunStore(db_url) as store:
        assert must_claim(store).attempt == 1


def test_sqlite_file_uses_wal_and_its_directory_is_created(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not path.parent.exists()
    with RunStore(sqlite_url) as store:
        store.upgrade()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_models_and_migrations_agree(run_store: RunStore, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


# --- claiming and finishing ------------------------------------------------------------------


def test_claim_finish_history_round_trip(run_store: RunStore) -> None:
    parameters = {"start": dt.date(2016, 1, 1), "label": "2016-01-01", "n": 3, "nested": {"at": [DAY]}}
    ranges = [(dt.date(2015, 12, 1), dt.date(2015, 12, 31)), (DAY, DAY)]
    claimed = must_claim(
        run_store, parameters=parameters, date_ranges=ranges, trigger="manual", owner="me:1:2020-01-01T00:00:00+00:00"
    )
    assert (claimed.state, claimed.attempt, claimed.finished_at, claimed.error) == ("running", 1, None, None)
    run_store.set_flow_run_id(claimed.id, "flow-run-123")

    assert run_store.finish(claimed.id, success=True, notebooks=["nb/a.ipynb", "nb/b.ipynb"], reports=["r/a.pdf"])

    [stored] = run_store.history()
    assert stored.id == claimed.id
    assert stored.key == RunKey("wf", params_hash(parameters), DAY)
    assert stored.parameters == parameters
    assert isinstance(stored.parameters["start"], dt.date)
    assert isinstance(stored.parameters["label"], str)
    assert stored.parameters["nested"]["at"] == [DAY]
    assert stored.date_ranges == ranges
    assert (stored.state, stored.attempt, stored.trigger) == ("success", 1, "manual")
    assert stored.notebooks == ["nb/a.ipynb", "nb/b.ipynb"]
    assert stored.reports == ["r/a.pdf"]
    assert stored.flow_run_id == "flow-run-123"
    assert stored.owner == "me:1:2020-01-01T00:00:00+00:00"
    assert stored.started_at == claimed.started_at
    assert stored.finished_at is not None and stored.finished_at >= stored.started_at

    as_json = json.loads(json.dumps(stored.as_json()))
    assert as_json["parameters"] == {"start": "2016-01-01", "label": "2016-01-01", "n": 3, "nested": {"at": ["2016-01-01"]}}
    assert as_json["date_ranges"] == [["2015-12-01", "2015-12-31"], ["2016-01-01", "2016-01-01"]]
    assert as_json["reference_date"] == "2016-01-01"
    assert dt.datetime.fromisoformat(as_json["started_at"]) == stored.started_at
    assert {"workflow", "state", "attempt", "finished_at", "error", "owner", "trigger", "id"} <= as_json.keys()


def test_a_date_and_the_same_text_are_different_runs(run_store: RunStore) -> None:
    as_date = must_claim(run_store, parameters={"start": dt.date(2016, 1, 1)})
    as_text = must_claim(run_store, parameters={"start": "2016-01-01"})
    assert as_date.key != as_text.key
    latest = run_store.latest_attempts()
    assert latest[as_date.key].parameters == {"start": dt.date(2016, 1, 1)}
    assert latest[as_text.key].parameters == {"start": "2016-01-01"}


def test_claim_conflicts_return_none(run_store: RunStore, caplog: pytest.LogCaptureFixture) -> None:
    first = must_claim(run_store)
    with caplog.at_level(logging.INFO, logger="autoflow.store"):
        assert claim(run_store) is None  # attempt 1 exists
    assert "already claimed by another AutoFlow process" in caplog.text
    # attempt 2 while attempt 1 still runs: the "one running attempt" index says no
    assert claim(run_store, previous_attempt=1) is None

    assert run_store.finish(first.id, success=False, error="boom")
    second = must_claim(run_store, previous_attempt=1)
    assert second.attempt == 2
    assert claim(run_store, previous_attempt=0) is None  # planned from stale history
    assert claim(run_store, previous_attempt=1) is None
    assert [a.attempt for a in run_store.history()] == [2, 1]


def test_claim_rejects_bad_arguments(run_store: RunStore) -> None:
    with pytest.raises(ValueError, match="trigger"):
        claim(run_store, trigger="cron")
    with pytest.raises(ValueError, match="previous_attempt"):
        claim(run_store, previous_attempt=-1)
    assert run_store.history() == []


def test_racing_processes_claim_each_run_exactly_once(db_url: str) -> None:
    with RunStore(db_url) as store:
        store.upgrade()
    days = [DAY + dt.timedelta(days=i) for i in range(50)]
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    processes = [SPAWN.Process(target=claim_in_child, args=(db_url, days, barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    won = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0]

    assert sorted(won[0] + won[1]) == days  # every run claimed, none twice
    with RunStore(db_url) as store:
        rows = store.history()
    assert len(rows) == 50
    assert {row.attempt for row in rows} == {1}


def test_finish_only_moves_running_rows(run_store: RunStore) -> None:
    attempt = must_claim(run_store)
    assert run_store.finish(attempt.id, success=False, error="cell 3 failed", notebooks=["a.ipynb"])
    assert not run_store.finish(attempt.id, success=True, notebooks=["b.ipynb"])
    [stored] = run_store.history()
    assert (stored.state, stored.error, stored.notebooks) == ("failed", "cell 3 failed", ["a.ipynb"])

    other = must_claim(run_store, workflow="other")
    run_store.interrupt([other.id, attempt.id], reason="AutoFlow was stopped")
    assert not run_store.finish(other.id, success=True)
    by_id = {a.id: a for a in run_store.history()}
    assert (by_id[other.id].state, by_id[other.id].error) == ("failed", "AutoFlow was stopped")
    assert by_id[attempt.id].error == "cell 3 failed"  # finished rows are left alone


def test_heartbeat_is_one_statement_and_skips_finished_rows(run_store: RunStore) -> None:
    attempts = [must_claim(run_store, reference_date=DAY + dt.timedelta(days=i)) for i in range(5)]
    assert run_store.finish(attempts[0].id, success=True)
    finished_heartbeat = run_store.history(state="success")[0].heartbeat_at

    with run_store.count_statements() as statements:
        run_store.heartbeat([a.id for a in attempts])
    assert len(statements) == 1

    by_id = {a.id: a for a in run_store.history()}
    assert by_id[attempts[0].id].heartbeat_at == finished_heartbeat
    for attempt in attempts[1:]:
        assert by_id[attempt.id].heartbeat_at >= attempt.heartbeat_at


def test_set_flow_run_id_of_unknown_attempt(run_store: RunStore) -> None:
    with pytest.raises(RunStoreError, match="no run attempt 999"):
        run_store.set_flow_run_id(999, "x")


# --- abandoned runs --------------------------------------------------------------------------


def test_expire_abandoned_by_lease(db_url: str) -> None:
    with RunStore(db_url, lease_seconds=600) as store:
        store.upgrade()
        abandoned = must_claim(store, owner=ELSEWHERE)
        done = must_claim(store, owner=ELSEWHERE, workflow="done")
        assert store.finish(done.id, success=True)
        beat = abandoned.heartbeat_at

        assert store.expire_abandoned(beat + dt.timedelta(seconds=599)) == []
        later = beat + dt.timedelta(seconds=601)
        [expired] = store.expire_abandoned(later)

        assert expired.id == abandoned.id
        assert (expired.state, expired.finished_at) == ("failed", later)
        assert expired.error == f"abandoned: no heartbeat since {beat.isoformat(timespec='seconds')} (owner {ELSEWHERE})"
        assert store.expire_abandoned(later) == []
        assert not store.finish(abandoned.id, success=True)  # too late: it was given up on
        by_id = {a.id: a for a in store.history()}
        assert by_id[abandoned.id].error == expired.error
        assert by_id[done.id].state == "success"


def test_expire_abandoned_by_dead_local_process(run_store: RunStore) -> None:
    owners = SPAWN.Queue()
    run_children(report_owner_id, owners, count=1)  # returns once the child has ended
    dead_owner = owners.get(timeout=60)
    host, pid, _ = dead_owner.split(":", 2)
    assert host == socket.gethostname() and int(pid) != os.getpid()
    reused_pid = f"{socket.gethostname()}:{os.getpid()}:2001-01-01T00:00:00+00:00"

    dead = must_claim(run_store, owner=dead_owner, workflow="dead")
    reused = must_claim(run_store, owner=reused_pid, workflow="reused")
    alive = must_claim(run_store, owner=owner_id(), workflow="alive")
    remote = must_claim(run_store, owner=ELSEWHERE, workflow="remote")
    unparsable = must_claim(run_store, owner="not an owner id", workflow="odd")

    expired = {a.id: a for a in run_store.expire_abandoned()}

    assert set(expired) == {dead.id, reused.id}
    assert expired[dead.id].error == f"abandoned: process {pid} on {host} has ended (owner {dead_owner})"
    running = {a.id for a in run_store.history(state="running")}
    assert running == {alive.id, remote.id, unparsable.id}


def test_expire_abandoned_rejects_naive_now(run_store: RunStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run_store.expire_abandoned(dt.datetime(2020, 1, 1))


def test_owner_id_names_this_process() -> None:
    host, pid, started = owner_id().split(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    started_at = dt.datetime.fromisoformat(started)
    assert started_at.utcoffset() == dt.timedelta(0)
    assert started_at <= dt.datetime.now(dt.UTC)


# --- time zones --------------------------------------------------------------------------------


def test_datetimes_are_timezone_aware_utc(run_store: RunStore) -> None:
    attempt = must_claim(run_store)
    tokyo = dt.timezone(dt.timedelta(hours=9))
    finished = (attempt.heartbeat_at + run_store.lease + dt.timedelta(seconds=1)).astimezone(tokyo)
    [expired] = run_store.expire_abandoned(finished)
    [stored] = run_store.history()
    for moment in (attempt.started_at, stored.started_at, stored.heartbeat_at, stored.finished_at):
        assert moment is not None and moment.tzinfo is dt.UTC
    assert stored.started_at == attempt.started_at
    assert stored.finished_at == finished == expired.finished_at


def test_sqlite_stores_utc_wall_time(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store:
        store.upgrade()
        attempt = must_claim(store)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        [(raw,)] = connection.execute("SELECT started_at FROM autoflow_run_attempts").fetchall()
    assert raw == attempt.started_at.strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.postgres
def test_postgres_session_time_zone_does_not_leak(postgres_database: str) -> None:
    tokyo_url = postgres_url_for(postgres_database, query="?options=-c%20timezone%3DAsia%2FTokyo")
    with RunStore(tokyo_url) as store:
        store.upgrade()
        attempt = must_claim(store)
        [stored] = store.history()
    assert stored.started_at.tzinfo is dt.UTC
    assert stored.started_at == attempt.started_at
    with psycopg.connect(f"{admin_dsn(postgres_database)} options='-c timezone=Asia/Tokyo'") as connection:
        raw = connection.execute("SELECT started_at FROM autoflow_run_attempts").fetchone()
    assert raw is not None and raw[0].utcoffset() == dt.timedelta(hours=9)  # the session really was Tokyo


def admin_dsn(database: str) -> str:
    with admin_connection() as connection:
        info = connection.info.get_parameters()
    return " ".join(f"{key}={value}" for key, value in {**info, "dbname": database}.items())


# --- the per-tick query ----------------------------------------------------------------------


def test_latest_attempts_is_one_statement_whatever_the_number_of_rows(run_store: RunStore) -> None:
    def latest(workflows: list[str] | None = None) -> dict[RunKey, Attempt]:
        with run_store.count_statements() as statements:
            result = run_store.latest_attempts(workflows)
        assert len(statements) == 1, statements
        return result

    first = must_claim(run_store, workflow="a")
    assert latest() == {first.key: first}

    for i in range(120):
        day = DAY + dt.timedelta(days=i)
        attempt = must_claim(run_store, workflow="a" if i % 2 else "b", reference_date=day, parameters={"i": i % 3})
        if i % 4 == 0:
            assert run_store.finish(attempt.id, success=False)
            must_claim(run_store, workflow=attempt.workflow, reference_date=day, parameters={"i": i % 3}, previous_attempt=1)

    everything = latest()
    assert len(everything) == 121
    assert sum(1 for a in everything.values() if a.attempt == 2) == 30
    assert all(a.state == "running" for a in everything.values() if a.attempt == 2)
    only_b = latest(["b"])
    assert len(only_b) == 60 and {key.workflow for key in only_b} == {"b"}
    with run_store.count_statements() as statements:
        assert run_store.latest_attempts([]) == {}
    assert statements == []


def test_history_is_newest_first_and_filters(run_store: RunStore) -> None:
    ids = [must_claim(run_store, workflow=f"w{i % 2}", reference_date=DAY + dt.timedelta(days=i)).id for i in range(6)]
    assert run_store.finish(ids[0], success=True)
    assert [a.id for a in run_store.history()] == ids[::-1]
    assert [a.id for a in run_store.history(limit=2)] == ids[:-3:-1]
    assert [a.id for a in run_store.history(workflow="w0")] == [ids[4], ids[2], ids[0]]
    assert [a.id for a in run_store.history(workflow="w0", state="running")] == [ids[4], ids[2]]
    with pytest.raises(ValueError, match="state"):
        run_store.history(state="done")


# --- failures and secrets ----------------------------------------------------------------------


def test_unreachable_database_is_a_run_store_error_without_the_password() -> None:
    password = "pa@ss w:rd%Secret"
    store = RunStore(f"postgresql+psycopg://autoflow:{quote(password, safe='')}@127.0.0.1:1/autoflow")
    for call in (store.upgrade, store.latest_attempts, lambda: claim(store)):
        with pytest.raises(RunStoreError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("cannot reach the run history database at postgresql+psycopg://autoflow:***@127.0.0.1:1/autoflow: ")
        assert "AUTOFLOW_DB_URI" in message and "\n" not in message
        assert password not in message and quote(password, safe="") not in message and "Secret" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "Secret" not in repr(store)


def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunStoreError, match="cannot create the directory .*a-file/sub"):
        RunStore(f"sqlite:///{blocker}/sub/autoflow.db")


def test_unsupported_database() -> None:
    with pytest.raises(RunStoreError, match="supports PostgreSQL .* and SQLite"):
        RunStore("mysql://user:secret@localhost/autoflow")
    with pytest.raises(RunStoreError, match="not valid") as caught:
        RunStore("not a url", display_url="<masked>")
    assert "<masked>" in str(caught.value)


@pytest.mark.postgres
def test_dropped_connections_are_replaced(postgres_url: str, postgres_database: str) -> None:
    with RunStore(postgres_url) as store:
        store.upgrade()
        must_claim(store)
        with admin_connection() as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (postgres_database,),
            ).fetchall()
        assert killed and all(ok for (ok,) in killed)
        assert len(store.history()) == 1


@pytest.mark.postgres
def test_password_is_never_stored_in_the_database(postgres_database: str) -> None:
    password = "Pw-never-stored-42"
    with RunStore(postgres_url_for(postgres_database, password=password)) as store:
        assert password not in repr(store) and password not in store.display_url
        store.upgrade()
        attempt = must_claim(store, parameters={"x": 1})
        store.set_flow_run_id(attempt.id, "flow")
        assert store.finish(attempt.id, success=False, error="failed")
        must_claim(store, previous_attempt=1, parameters={"x": 1})
        store.expire_abandoned()
    with psycopg.connect(admin_dsn(postgres_database)) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert {name for (name,) in tables} == {"autoflow_run_attempts", VERSION_TABLE}
        dump = " ".join(
            str(row)
            for (name,) in tables
            for row in connection.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(name)))
        )
    assert "Pw-never-stored" not in dump
    assert "failed" in dump  # the dump does hold the rows


def test_latest_states_agree_with_latest_attempts_in_one_statement(run_store: RunStore) -> None:
    long_error = "first line of the error\n" + "x" * 5000
    for i in range(12):
        day = DAY + dt.timedelta(days=i)
        attempt = must_claim(run_store, workflow="a" if i % 2 else "b", reference_date=day)
        if i % 3 == 0:
            assert run_store.finish(attempt.id, success=True)
        elif i % 3 == 1:
            assert run_store.finish(attempt.id, success=False, error=long_error)
    with run_store.count_statements() as statements:
        states = run_store.latest_states(["a", "b", "missing"])
    assert len(statements) == 1, statements
    attempts = run_store.latest_attempts()
    assert {(k.workflow, k.params_hash, k.reference_date) for k in attempts} == set(states)
    for key, attempt in attempts.items():
        state = states[(key.workflow, key.params_hash, key.reference_date)]
        assert (state.state, state.attempt) == (attempt.state, attempt.attempt)
        assert state.heartbeat_at == (attempt.heartbeat_at if attempt.state == "running" else None)
        if attempt.state == "failed":
            assert state.error is not None and state.error.startswith("first line of the error\nxxx") and len(state.error) == 500
        else:
            assert state.error is None
    assert set(run_store.latest_states(["a"])) == {k for k in states if k[0] == "a"}
    assert run_store.latest_states([]) == {}


def test_a_queued_attempt_is_taken_once_and_failed_only_while_unstarted(run_store: RunStore) -> None:
    queued, other = must_claim(run_store), must_claim(run_store, reference_date=DAY + dt.timedelta(days=1))
    assert run_store.queued() == []  # claimed in this process: nothing submitted
    run_store.set_flow_run_id(queued.id, "flow-run-1")
    run_store.set_flow_run_id(other.id, "flow-run-2")
    assert sorted(a.id for a in run_store.queued()) == [queued.id, other.id]

    assert run_store.take(queued.id, owner=ELSEWHERE, executor="worker w1 on elsewhere, pid 4242", flow_run_id="flow-run-1")
    taken = run_store.attempt(queued.id)
    assert taken is not None and taken.executor == "worker w1 on elsewhere, pid 4242" and taken.owner == ELSEWHERE
    assert [a.id for a in run_store.queued()] == [other.id]
    assert not run_store.fail_unstarted(queued.id, "never started"), "a taken attempt is its executor's to end"
    assert run_store.attempt(queued.id).state == "running"  # type: ignore[union-attr]

    assert run_store.fail_unstarted(other.id, "its flow run was cancelled")
    assert not run_store.take(other.id, owner=ELSEWHERE, executor="late worker"), "a failed attempt cannot be taken"
    assert run_store.attempt(other.id).error == "its flow run was cancelled"  # type: ignore[union-attr]


def test_an_attempt_whose_lease_ran_out_cannot_be_taken(db_url: str) -> None:
    with RunStore(db_url, lease_seconds=0.05) as store:
        store.upgrade()
        attempt = must_claim(store)
        time.sleep(0.2)
        assert not store.take(attempt.id, owner=owner_id(), executor="too late")
        assert store.attempt(attempt.id).executor is None  # type: ignore[union-attr]


# --- operator levers: cancel, retry budget ------------------------------------------------------


def test_an_older_history_gains_cancel_and_keeps_its_rows(db_url: str) -> None:
    """A database at revision 0002 (the previous release) upgrades in place: rows kept, and
    the new state and triggers accepted (SQLite rebuilds the table for its CHECK constraints)."""
    from alembic import command

    from autoflow.store.migrate import alembic_config

    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0002")
    finally:
        engine.dispose()
    with RunStore(db_url) as store:
        assert store.schema_status() == "old"
        engine = sa.create_engine(db_url)
        try:
            with engine.begin() as connection:  # a row written by the previous release
                connection.execute(sa.text(
                    "INSERT INTO autoflow_run_attempts (workflow, parameters, params_hash, reference_date, date_ranges, state, "
                    "attempt, started_at, heartbeat_at, owner, notebooks, reports, trigger) VALUES ('wf', '{}', :h, :d, '[]', "
                    "'failed', 1, :t, :t, 'old', '[]', '[]', 'sensor')"
                ), {"h": params_hash({}), "d": DAY, "t": dt.datetime(2026, 1, 1, 12, 0)})
        finally:
            engine.dispose()
        store.upgrade()
        assert version_rows(db_url) == [head_revision()]
        (old,) = store.history()
        assert (old.state, old.attempt, old.cancel_requested_at) == ("failed", 1, None)
        rerun = must_claim(store, previous_attempt=1, trigger="rerun")
        assert store.request_cancel(rerun.id, by="ops") == "cancelled"
        assert [a.state for a in store.history()] == ["cancelled", "failed"]


def test_cancel_before_start_while_running_and_after_the_end(run_store: RunStore) -> None:
    queued = must_claim(run_store)
    assert run_store.request_cancel(queued.id, by="ops@host") == "cancelled"
    record = run_store.attempt(queued.id)
    assert record is not None and record.state == "cancelled" and record.error == "cancelled by ops@host before it started"
    assert not run_store.take(queued.id, owner=owner_id(), executor="here")  # a worker that picks it up runs nothing

    running = must_claim(run_store, previous_attempt=1)
    assert run_store.take(running.id, owner=owner_id(), executor="here")
    assert run_store.cancel_requested(running.id) is None
    assert run_store.request_cancel(running.id, by="ops@host") == "requested"
    assert run_store.request_cancel(running.id, by="someone else") == "already requested"
    request = run_store.cancel_requested(running.id)
    assert request is not None and request.startswith("ops@host at ") and request.endswith(" UTC")
    assert run_store.renew(running.id)  # still running until its process stops it
    assert run_store.finish(running.id, success=False, error="cancelled by ops@host", cancelled=True)
    assert run_store.request_cancel(running.id, by="ops") == "cancelled"
    done = must_claim(run_store, previous_attempt=2)
    assert run_store.finish(done.id, success=True)
    assert run_store.request_cancel(done.id, by="ops") == "success"
    with pytest.raises(RunStoreError, match="no run attempt 999"):
        run_store.request_cancel(999, by="ops")
    assert [a.attempt for a in run_store.attempts_of(done.key)] == [1, 2, 3]


def test_a_cancelled_run_whose_process_died_is_recorded_cancelled(run_store: RunStore) -> None:
    attempt = must_claim(run_store, owner=ELSEWHERE)
    assert run_store.take(attempt.id, owner=ELSEWHERE, executor="elsewhere")
    assert run_store.request_cancel(attempt.id, by="ops") == "requested"
    (expired,) = run_store.expire_abandoned(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert expired.state == "cancelled" and expired.error is not None and expired.error.startswith("cancelled by ops; the run then lost its process")


def test_latest_states_carry_the_retry_budget(run_store: RunStore) -> None:
    first = must_claim(run_store)
    assert run_store.finish(first.id, success=False, error="boom")
    second = must_claim(run_store, previous_attempt=1)
    assert run_store.finish(second.id, success=False, error="boom")
    state = run_store.latest_states(["wf"])[("wf", params_hash({}), DAY)]
    assert (state.id, state.attempt, state.budget_from, state.failures) == (second.id, 2, 1, 2)
    assert state.finished_at is not None and state.finished_at.tzinfo is not None
    rerun = must_claim(run_store, previous_attempt=2, trigger="rerun")
    assert run_store.finish(rerun.id, success=False, error="boom")
    after = must_claim(run_store, previous_attempt=3)  # the sensor's retry after the rerun
    assert run_store.finish(after.id, success=False, error="boom")
    state = run_store.latest_states(["wf"])[("wf", params_hash({}), DAY)]
    assert (state.attempt, state.budget_from, state.failures) == (4, 3, 2)
    lost = must_claim(run_store, previous_attempt=4)  # its process stopped: not the run's failure
    assert run_store.finish(lost.id, success=False, error="interrupted: AutoFlow was stopped (SIGTERM)")
    state = run_store.latest_states(["wf"])[("wf", params_hash({}), DAY)]
    assert (state.attempt, state.failures) == (5, 2)
    queued = must_claim(run_store, previous_attempt=5)  # no worker ever took it: not the run's failure either
    assert run_store.fail_unstarted(queued.id, "not started: the work pool 'p' had no live worker for 120 s")
    assert run_store.latest_states(["wf"])[("wf", params_hash({}), DAY)].failures == 2
