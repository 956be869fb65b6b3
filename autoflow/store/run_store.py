"""RunStore: the run history in SQL. The only AutoFlow code that speaks SQL.

A run is ``workflow + params_hash + reference_date``; each try at it is one row (an attempt).
Claiming inserts attempt ``N + 1`` where ``N`` is the latest attempt the caller saw; a unique
constraint makes that insert succeed for exactly one process, so nothing runs twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from autoflow.errors import RunStoreError
from autoflow.parameters import from_typed_json, params_hash, to_typed_json
from autoflow.settings import mask_url
from autoflow.planning import LOST_PREFIXES, PriorAttempt, RunId
from autoflow.store.attempts import Attempt, RunKey, attempt_from_row, encode_date_ranges
from autoflow.store.engine import WRITE, create_engine, one_line, parse_url, sqlite_file, unreachable
from autoflow.store.owners import Owner, is_gone_from_this_host
from autoflow.store.schema import STATES, TRIGGERS, run_attempts
from autoflow.testhooks import fault_point

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("postgresql", "sqlite")
#: seconds between tries to record a run's end while the database is away (doubling up to the max)
FINISH_RETRY_FIRST_DELAY = 0.5
FINISH_RETRY_MAX_DELAY = 5.0
#: how much of a failed attempt's error planning reads (it shows the first line)
ERROR_PREFIX_CHARS = 500
_runs = run_attempts.c


def _latest_states_statement() -> sa.Select[Any]:
    """:meth:`RunStore.latest_states`'s statement, the workflows bound at execution (``workflows``).

    Built once: building it takes aliases and subqueries that end up in reference cycles, and
    every tick would leave them for the cyclic garbage collector.
    """
    newer = run_attempts.alias("newer")
    by_hand = run_attempts.alias("by_hand")
    by_hand2 = run_attempts.alias("by_hand2")
    counted = run_attempts.alias("counted")
    running = _runs.state == "running"
    return sa.select(
        _runs.workflow,
        _runs.params_hash,
        _runs.reference_date,
        _runs.state,
        _runs.attempt,
        _runs.id,
        sa.case((running, _runs.heartbeat_at), else_=sa.null()).label("heartbeat_at"),
        sa.case((_runs.state.in_(("failed", "cancelled")), sa.func.substr(_runs.error, 1, ERROR_PREFIX_CHARS)), else_=sa.null()).label("error"),
        sa.case((_runs.state == "failed", _runs.finished_at), else_=sa.null()).label("finished_at"),
        # the retry budget counts from the latest attempt an operator started (rerun, backfill, trigger)
        sa.select(sa.func.coalesce(sa.func.max(by_hand.c.attempt), 1))
        .where(
            by_hand.c.workflow == _runs.workflow,
            by_hand.c.params_hash == _runs.params_hash,
            by_hand.c.reference_date == _runs.reference_date,
            by_hand.c.trigger != "sensor",
        )
        .scalar_subquery()
        .label("budget_from"),
        # failures that count against max_attempts: since that attempt, not lost ones (LOST_PREFIXES)
        sa.select(sa.func.count())
        .where(
            counted.c.workflow == _runs.workflow,
            counted.c.params_hash == _runs.params_hash,
            counted.c.reference_date == _runs.reference_date,
            counted.c.state == "failed",
            *(sa.not_(sa.func.coalesce(counted.c.error, "").like(f"{prefix}%")) for prefix in LOST_PREFIXES),
            counted.c.attempt >= sa.select(sa.func.coalesce(sa.func.max(by_hand2.c.attempt), 1))
            .where(
                by_hand2.c.workflow == _runs.workflow,
                by_hand2.c.params_hash == _runs.params_hash,
                by_hand2.c.reference_date == _runs.reference_date,
                by_hand2.c.trigger != "sensor",
            )
            .scalar_subquery(),
        )
        .scalar_subquery()
        .label("failures"),
    ).where(
        _runs.workflow.in_(sa.bindparam("workflows", expanding=True)),
        ~sa.exists().where(
            newer.c.workflow == _runs.workflow,
            newer.c.params_hash == _runs.params_hash,
            newer.c.reference_date == _runs.reference_date,
            newer.c.attempt > _runs.attempt,
        ),
    )


_LATEST_STATES = _latest_states_statement()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


class RunStore:
    """The run history database (PostgreSQL or SQLite).

    ``url`` is a SQLAlchemy URL with any password filled in (``Settings.db_url``); it is only
    ever shown as ``display_url`` (default: ``url`` with the password masked).
    ``lease_seconds``: a running attempt without a heartbeat for this long is abandoned.
    ``read_only``: for looking only (``autoflow plan``): creates no SQLite file or directory and
    cannot :meth:`upgrade`; ask :meth:`schema_status` before reading.
    """

    def __init__(self, url: str, *, lease_seconds: float = 300.0, display_url: str | None = None, read_only: bool = False) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be greater than 0, not {lease_seconds!r}")
        self.display_url = display_url or mask_url(url)
        self.lease = dt.timedelta(seconds=lease_seconds)
        parsed = parse_url(url, self.display_url)
        self._backend = parsed.get_backend_name()
        if self._backend not in SUPPORTED_BACKENDS:
            raise RunStoreError(
                f"the run history database {self.display_url} is {self._backend}; AutoFlow supports "
                "PostgreSQL (postgresql://...) and SQLite (sqlite:///...): change AUTOFLOW_DB_URI"
            )
        self._secrets = (parsed.password,) if isinstance(parsed.password, str) else ()
        self.read_only = read_only
        self._file = sqlite_file(parsed)
        self._engine = create_engine(parsed, self.display_url, read_only=read_only)

    def __repr__(self) -> str:
        return f"RunStore({self.display_url!r})"

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        """A connection inside a transaction; database errors become RunStoreError."""
        try:
            connection = self._engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise unreachable(self.display_url, self._backend, one_line(exc, secrets=self._secrets)) from None
        try:
            with connection:
                if write:
                    connection.execution_options(**{WRITE: True})
                with connection.begin():
                    yield connection
        except sa.exc.SQLAlchemyError as exc:
            reason = one_line(exc, secrets=self._secrets)
            if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
                raise unreachable(self.display_url, self._backend, reason) from None
            raise RunStoreError(
                f"the run history database at {self.display_url} could not {action}: {reason}; "
                "check the database server's health and that no other program changed AutoFlow's tables"
            ) from None

    def schema_status(self) -> str:
        """How the database compares with this AutoFlow, changing nothing (no file is created).

        "missing" (no SQLite file, or no AutoFlow tables yet: no history), "current", "old"
        (needs ``autoflow db upgrade``) or "newer" (written by a newer AutoFlow).
        """
        from autoflow.store import migrate

        if self._file is not None and not self._file.exists():
            return "missing"
        with self._transaction("read its schema version") as connection:
            return migrate.schema_status(connection)

    def upgrade(self) -> None:
        """Create or migrate the schema to this AutoFlow's version. Idempotent, concurrency-safe."""
        from alembic.util import CommandError  # Alembic takes a while to import: only when needed

        from autoflow.store import migrate

        if self.read_only:
            raise RuntimeError("a read-only RunStore cannot upgrade the schema")

        try:
            with self._transaction("upgrade its schema", write=True) as connection:
                migrate.upgrade(connection)
        except CommandError as exc:
            raise RunStoreError(
                f"cannot upgrade the run history schema at {self.display_url}: {one_line(exc)}; "
                "if a newer AutoFlow has used this database, run that version"
            ) from None

    def latest_attempts(self, workflows: Collection[str] | None = None) -> dict[RunKey, Attempt]:
        """The latest attempt of every run (of ``workflows``, if given), in one statement."""
        newer = run_attempts.alias("newer")
        statement = sa.select(run_attempts).where(
            ~sa.exists().where(
                newer.c.workflow == _runs.workflow,
                newer.c.params_hash == _runs.params_hash,
                newer.c.reference_date == _runs.reference_date,
                newer.c.attempt > _runs.attempt,
            )
        )
        if workflows is not None:
            if not workflows:
                return {}
            statement = statement.where(_runs.workflow.in_(sorted(set(workflows))))
        with self._transaction("read the latest run attempts") as connection:
            rows = connection.execute(statement).mappings().all()
        attempts = (attempt_from_row(row) for row in rows)
        return {attempt.key: attempt for attempt in attempts}

    def latest_states(self, workflows: Collection[str]) -> dict[RunId, PriorAttempt]:
        """What planning needs of the latest attempt of every run of ``workflows``, in one statement.

        Keyed by ``(workflow, params_hash, reference_date)``. Unlike :meth:`latest_attempts` it
        reads no parameters, date ranges or output lists, only the short columns (a heartbeat
        only for running attempts, the start of the error only for failed or cancelled ones, the
        end only for failed ones, ``budget_from``: the attempt the retry budget counts from, the
        latest one an operator started, else 1, and ``failures``: the failed attempts since then
        that count against ``max_attempts``, i.e. not those whose process was stopped or died),
        so a tick over years of history stays cheap.
        """
        if not workflows:
            return {}
        with self._transaction("read the latest run attempts") as connection:
            rows = connection.execute(_LATEST_STATES, {"workflows": sorted(set(workflows))}).all()
        # the rows themselves have PriorAttempt's attributes: no object per run to build
        return {(row[0], row[1], row[2]): row for row in rows}

    def claim(
        self,
        *,
        workflow: str,
        parameters: Mapping[str, Any],
        reference_date: dt.date,
        date_ranges: Sequence[tuple[dt.date, dt.date]],
        previous_attempt: int,
        owner: str,
        trigger: str = "sensor",
    ) -> Attempt | None:
        """Record attempt ``previous_attempt + 1`` of a run as running, owned by ``owner``.

        Returns None when that attempt already exists or another attempt of the run is
        running, i.e. another process got there first since the caller looked.
        """
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, not {trigger!r}")
        if previous_attempt < 0:
            raise ValueError(f"previous_attempt must be 0 or more, not {previous_attempt!r}")
        now = _now()
        typed_parameters = to_typed_json(parameters)
        values: dict[str, Any] = {
            "workflow": workflow,
            "parameters": typed_parameters,
            "params_hash": params_hash(parameters),
            "reference_date": reference_date,
            "date_ranges": encode_date_ranges(date_ranges),
            "state": "running",
            "attempt": previous_attempt + 1,
            "started_at": now,
            "finished_at": None,
            "heartbeat_at": now,
            "owner": owner,
            "error": None,
            "notebooks": [],
            "reports": [],
            "flow_run_id": None,
            "trigger": trigger,
            "executor": None,
        }
        insert = postgresql.insert if self._backend == "postgresql" else sqlite.insert
        statement = insert(run_attempts).values(values).on_conflict_do_nothing().returning(_runs.id)
        with self._transaction(f"claim {workflow} for {reference_date}", write=True) as connection:
            new_id = connection.execute(statement).scalar_one_or_none()
        if new_id is None:
            log.info(
                "%s for %s (attempt %d) was already claimed by another AutoFlow process",
                workflow,
                reference_date.isoformat(),
                previous_attempt + 1,
            )
            return None
        return attempt_from_row({**values, "id": new_id, "parameters": typed_parameters})

    def heartbeat(self, attempt_ids: Collection[int]) -> None:
        """Tell the world these running attempts are still alive (one statement)."""
        ids = sorted(set(attempt_ids))
        if not ids:
            return
        statement = (
            run_attempts.update()
            .where(_runs.id.in_(ids), _runs.state == "running")
            .values(heartbeat_at=_now())
        )
        with self._transaction("record a heartbeat", write=True) as connection:
            connection.execute(statement)

    def renew(self, attempt_id: int) -> bool:
        """Refresh a running attempt's heartbeat if its lease has not run out; False (changing
        nothing) when it is no longer running or its last heartbeat is older than the lease,
        i.e. it is abandoned, cancelled or superseded and must not be executed."""
        now = _now()
        statement = (
            run_attempts.update()
            .where(_runs.id == attempt_id, _runs.state == "running", _runs.heartbeat_at >= now - self.lease)
            .values(heartbeat_at=now)
        )
        with self._transaction(f"renew the lease of run attempt {attempt_id}", write=True) as connection:
            return bool(connection.execute(statement).rowcount)

    def take(self, attempt_id: int, *, owner: str, executor: str, flow_run_id: str | None = None) -> bool:
        """The executing process takes a running attempt's lease: records itself as its owner and
        executor (and its Prefect flow run) and refreshes its heartbeat, in one statement.

        False, changing nothing, when the attempt is no longer running or its lease has run out
        (abandoned, cancelled or superseded): it must not be executed.
        """
        now = _now()
        values: dict[str, Any] = {"heartbeat_at": now, "owner": owner, "executor": executor[:255]}
        if flow_run_id is not None:
            values["flow_run_id"] = flow_run_id
        statement = (
            run_attempts.update()
            .where(_runs.id == attempt_id, _runs.state == "running", _runs.heartbeat_at >= now - self.lease)
            .values(values)
        )
        with self._transaction(f"take the lease of run attempt {attempt_id}", write=True) as connection:
            return bool(connection.execute(statement).rowcount)

    def fail_unstarted(self, attempt_id: int, error: str) -> bool:
        """Fail a running attempt that no process has taken yet (queued); False, changing
        nothing, if it was taken (or ended) meanwhile."""
        statement = (
            run_attempts.update()
            .where(_runs.id == attempt_id, _runs.state == "running", _runs.executor.is_(None))
            .values(state="failed", finished_at=_now(), error=error)
        )
        with self._transaction("record a queued run that never started", write=True) as connection:
            return bool(connection.execute(statement).rowcount)

    def succeeded_dates(self, workflow: str) -> dict[str, set[dt.date]]:
        """params_hash -> reference dates whose latest attempt of ``workflow`` succeeded (one statement)."""
        newer = run_attempts.alias("newer")
        statement = sa.select(_runs.params_hash, _runs.reference_date).where(
            _runs.workflow == workflow,
            _runs.state == "success",
            ~sa.exists().where(
                newer.c.workflow == _runs.workflow,
                newer.c.params_hash == _runs.params_hash,
                newer.c.reference_date == _runs.reference_date,
                newer.c.attempt > _runs.attempt,
            ),
        )
        found: dict[str, set[dt.date]] = {}
        with self._transaction(f"read which runs of '{workflow}' succeeded") as connection:
            for digest, day in connection.execute(statement):
                found.setdefault(digest, set()).add(day)
        return found

    def ended_mark(self) -> tuple[int, dt.datetime | None]:
        """How many attempts have ended, and the latest end: changes whenever a run ends (one short read)."""
        statement = sa.select(sa.func.count(), sa.func.max(_runs.finished_at)).where(_runs.state != "running")
        with self._transaction("read when a run last ended") as connection:
            count, latest = connection.execute(statement).one()
        if isinstance(latest, str):  # SQLite's aggregate skips the column type
            latest = dt.datetime.fromisoformat(latest)
        return int(count), latest

    def queued(self) -> list[Attempt]:
        """Running attempts handed to a Prefect work pool that no process has taken yet."""
        statement = sa.select(run_attempts).where(
            _runs.state == "running", _runs.executor.is_(None), _runs.flow_run_id.is_not(None)
        )
        with self._transaction("read the queued runs") as connection:
            return [attempt_from_row(row) for row in connection.execute(statement).mappings()]

    def request_cancel(self, attempt_id: int, *, by: str) -> str:
        """Ask attempt ``attempt_id`` to stop; returns what happened:

        ``"cancelled"``: no process had taken it yet (queued, or claimed and not started), so it
        is recorded cancelled at once and will never execute; ``"requested"``: it is executing,
        and the lease of the process executing it stops it within seconds; ``"already
        requested"``; or the state it has ended in (``"success"``, ``"failed"``, ``"cancelled"``).
        Raises RunStoreError when the history has no such attempt.
        """
        now = _now()
        by = by[:255]
        error = f"cancelled by {by} before it started"
        with self._transaction(f"cancel run attempt {attempt_id}", write=True) as connection:
            unstarted = connection.execute(
                run_attempts.update()
                .where(_runs.id == attempt_id, _runs.state == "running", _runs.executor.is_(None))
                .values(state="cancelled", finished_at=now, error=error, cancel_requested_at=now, cancel_requested_by=by)
            ).rowcount
            if unstarted:
                return "cancelled"
            requested = connection.execute(
                run_attempts.update()
                .where(_runs.id == attempt_id, _runs.state == "running", _runs.cancel_requested_at.is_(None))
                .values(cancel_requested_at=now, cancel_requested_by=by)
            ).rowcount
            if requested:
                return "requested"
            row = connection.execute(sa.select(_runs.state).where(_runs.id == attempt_id)).one_or_none()
        if row is None:
            raise RunStoreError(f"there is no run attempt {attempt_id} in the run history at {self.display_url}; `autoflow status` lists their ids")
        return "already requested" if row.state == "running" else str(row.state)

    def cancel_requested(self, attempt_id: int) -> str | None:
        """Who asked attempt ``attempt_id`` to stop (and when), if anyone did: one short read."""
        statement = sa.select(_runs.cancel_requested_at, _runs.cancel_requested_by).where(_runs.id == attempt_id)
        with self._transaction(f"read whether run attempt {attempt_id} is to stop") as connection:
            row = connection.execute(statement).one_or_none()
        if row is None or row.cancel_requested_at is None:
            return None
        return f"{row.cancel_requested_by} at {row.cancel_requested_at:%Y-%m-%d %H:%M:%S} UTC"

    def attempts_of(self, key: RunKey) -> list[Attempt]:
        """Every attempt of one run, oldest first."""
        statement = (
            sa.select(run_attempts)
            .where(_runs.workflow == key.workflow, _runs.params_hash == key.params_hash, _runs.reference_date == key.reference_date)
            .order_by(_runs.attempt)
        )
        with self._transaction("read a run's attempts") as connection:
            return [attempt_from_row(row) for row in connection.execute(statement).mappings()]

    def set_flow_run_id(self, attempt_id: int, flow_run_id: str) -> None:
        """Record the Prefect flow run executing an attempt."""
        statement = run_attempts.update().where(_runs.id == attempt_id).values(flow_run_id=flow_run_id)
        with self._transaction("record a flow run id", write=True) as connection:
            found = connection.execute(statement).rowcount
        if not found:
            raise RunStoreError(f"there is no run attempt {attempt_id} in {self.display_url}")

    def finish(
        self,
        attempt_id: int,
        *,
        success: bool,
        error: str | None = None,
        notebooks: Sequence[str] = (),
        reports: Sequence[str] = (),
        retry_for: float = 0.0,
        cancelled: bool = False,
    ) -> bool:
        """Mark a running attempt succeeded, failed or (``cancelled``, not succeeded) cancelled, with its outputs.

        Returns False, changing nothing, if the attempt was no longer running (for instance
        it was declared abandoned meanwhile). While the database fails (say it is restarting),
        tries again for up to ``retry_for`` seconds, so a finished run is not run again just
        because its end could not be written at once; then raises :class:`RunStoreError`.
        """
        deadline = time.monotonic() + retry_for
        delay = FINISH_RETRY_FIRST_DELAY
        waited = False
        while True:
            try:
                found = self._finish(attempt_id, "success" if success else "cancelled" if cancelled else "failed", error, notebooks, reports)
            except RunStoreError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if not waited:
                    log.warning("cannot record the end of run attempt %d yet, trying again for up to %.0f s: %s", attempt_id, left, exc)
                    waited = True
                time.sleep(min(delay, left))
                delay = min(delay * 2, FINISH_RETRY_MAX_DELAY)
                continue
            if waited:
                log.info("recorded the end of run attempt %d: the run history database is back", attempt_id)
            return found

    def _finish(self, attempt_id: int, state: str, error: str | None, notebooks: Sequence[str], reports: Sequence[str]) -> bool:
        now = _now()
        statement = (
            run_attempts.update()
            .where(_runs.id == attempt_id, _runs.state == "running")
            .values(
                state=state,
                finished_at=now,
                heartbeat_at=now,
                error=error,
                notebooks=[str(path) for path in notebooks],
                reports=[str(path) for path in reports],
            )
        )
        with self._transaction("record the end of a run", write=True) as connection:
            found = bool(connection.execute(statement).rowcount)
            fault_point("recording-end")
            return found

    def expire_abandoned(self, now: dt.datetime | None = None) -> list[Attempt]:
        """Fail running attempts nobody is looking after; returns them as they are now.

        Abandoned: no heartbeat for longer than the lease, or owned by a process on this host
        that has ended (or whose pid now belongs to another process).
        """
        now = _now() if now is None else now
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        cutoff = now - self.lease
        with self._transaction("look for abandoned runs") as connection:
            rows = connection.execute(sa.select(run_attempts).where(_runs.state == "running")).mappings().all()
        verdicts: list[tuple[Attempt, str]] = []
        for attempt in map(attempt_from_row, rows):
            if attempt.heartbeat_at < cutoff:
                verdicts.append(
                    (attempt, f"abandoned: no heartbeat since {_iso(attempt.heartbeat_at)} (owner {attempt.owner})")
                )
            elif is_gone_from_this_host(attempt.owner):
                owner = Owner.parse(attempt.owner)
                assert owner is not None
                verdicts.append(
                    (attempt, f"abandoned: process {owner.pid} on {owner.host} has ended (owner {attempt.owner})")
                )
        expired: list[Attempt] = []
        if not verdicts:
            return expired
        with self._transaction("mark abandoned runs as failed", write=True) as connection:
            for attempt, error in verdicts:
                # asked to stop and then lost: what the operator asked for, not a failure to retry
                state = "failed" if attempt.cancel_requested_at is None else "cancelled"
                if state == "cancelled":
                    error = f"cancelled by {attempt.cancel_requested_by}; the run then lost its process ({error})"
                # unchanged since we looked: no heartbeat or finish slipped in meanwhile
                statement = (
                    run_attempts.update()
                    .where(
                        _runs.id == attempt.id,
                        _runs.state == "running",
                        _runs.heartbeat_at == attempt.heartbeat_at,
                    )
                    .values(state=state, finished_at=now, error=error)
                )
                if connection.execute(statement).rowcount:
                    expired.append(dataclasses.replace(attempt, state=state, finished_at=now, error=error))
        for attempt in expired:
            log.warning(
                "%s for %s (attempt %d) marked %s: %s",
                attempt.workflow,
                attempt.reference_date.isoformat(),
                attempt.attempt,
                attempt.state,
                attempt.error,
            )
        return expired

    def interrupt(self, attempt_ids: Collection[int], reason: str = "interrupted") -> None:
        """Fail these attempts, if still running, with ``reason`` as the error (e.g. on shutdown)."""
        ids = sorted(set(attempt_ids))
        if not ids:
            return
        statement = (
            run_attempts.update()
            .where(_runs.id.in_(ids), _runs.state == "running")
            .values(state="failed", finished_at=_now(), error=reason)
        )
        with self._transaction("record interrupted runs", write=True) as connection:
            connection.execute(statement)

    def history(
        self, *, workflow: str | None = None, state: str | None = None, limit: int | None = None
    ) -> list[Attempt]:
        """Attempts, newest first, optionally of one workflow and/or in one state."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        statement = sa.select(run_attempts).order_by(_runs.id.desc())
        if workflow is not None:
            statement = statement.where(_runs.workflow == workflow)
        if state is not None:
            statement = statement.where(_runs.state == state)
        if limit is not None:
            statement = statement.limit(limit)
        with self._transaction("read the run history") as connection:
            rows = connection.execute(statement).mappings().all()
        return [attempt_from_row(row) for row in rows]

    def attempt(self, attempt_id: int) -> Attempt | None:
        """The attempt with this id, or None when the history has none."""
        statement = sa.select(run_attempts).where(_runs.id == attempt_id)
        with self._transaction(f"read run attempt {attempt_id}") as connection:
            row = connection.execute(statement).mappings().one_or_none()
        return None if row is None else attempt_from_row(row)

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        """Collect the SQL statements this store sends while the block runs."""
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        sa.event.listen(self._engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            sa.event.remove(self._engine, "before_cursor_execute", record)
