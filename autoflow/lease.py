"""A run attempt's lease: whoever executes an attempt holds it, beats it and records its end.

The ``workflow-run`` flow enters an :class:`AttemptLease` wherever it runs (in the service's
process or on a Prefect worker). Entering checks that the attempt is still the current one
(``running``, its lease not run out) and refuses otherwise; while held, a thread refreshes the
attempt's heartbeat every third of the lease and looks every :data:`CANCEL_POLL` seconds
whether ``autoflow cancel`` asked it to stop (then its notebooks are interrupted); leaving
records the end. No exit path leaves the attempt ``running``: an exception records it failed,
SIGTERM or Ctrl-C records it ``interrupted``, a cancel request ``cancelled``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from autoflow.errors import AutoFlowError, RunStoreError
from autoflow.notebooks.watchdog import cancel_attempt, forget_attempt
from autoflow.store import Attempt, RunStore, owner_id

log = logging.getLogger(__name__)

#: seconds between a running attempt's looks for a cancel request (``autoflow cancel``)
CANCEL_POLL = 2.0


def executor_name() -> str:
    """Where this process executes runs: ``worker NAME on HOST, pid N`` in a flow run a Prefect
    worker started (it sets ``PREFECT__WORKER_NAME``), else ``HOST, pid N``."""
    where = f"{socket.gethostname()}, pid {os.getpid()}"
    worker = os.environ.get("PREFECT__WORKER_NAME")
    return f"worker {worker} on {where}" if worker else where


class StaleAttempt(AutoFlowError):
    """The attempt is no longer the current one (abandoned, cancelled or superseded): do not run it."""


class LeaseTracker:
    """The attempts whose leases this process holds, and since when (for ``autoflow health``)."""

    def __init__(self) -> None:
        #: attempt id -> when this process started it
        self._started: dict[int, dt.datetime] = {}
        self._last_ended: dt.datetime | None = None
        self._lock = threading.Lock()

    def add(self, attempt_id: int) -> None:
        with self._lock:
            self._started.setdefault(attempt_id, dt.datetime.now(dt.timezone.utc))

    def discard(self, attempt_id: int) -> None:
        with self._lock:
            if self._started.pop(attempt_id, None) is not None:
                self._last_ended = dt.datetime.now(dt.timezone.utc)

    @property
    def active(self) -> set[int]:
        with self._lock:
            return set(self._started)

    def busy_since(self) -> dt.datetime | None:
        """When the oldest held attempt started; with none held, when the last one ended."""
        with self._lock:
            return min(self._started.values()) if self._started else self._last_ended


class AttemptLease:
    """Hold run attempt ``attempt_id`` for as long as the ``with`` block runs.

    ``__enter__`` raises :class:`StaleAttempt` (changing nothing) if the attempt is no longer
    running or its lease has run out. Call :meth:`finish` to record how the run ended; leaving
    the block without it records the attempt failed (an exception) or interrupted (SIGTERM,
    Ctrl-C, ``SystemExit``).
    """

    def __init__(
        self,
        store: RunStore,
        attempt_id: int,
        *,
        lease_seconds: float,
        tracker: LeaseTracker | None = None,
        flow_run_id: str | None = None,
    ) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.lease_seconds = lease_seconds
        self.interval = max(lease_seconds / 3.0, 0.05)
        #: who asked for this attempt to stop and when (``autoflow cancel``), once the lease has seen it
        self.cancel_request: str | None = None
        self.tracker = tracker
        self.flow_run_id = flow_run_id
        self.ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False
        self._finishing = False
        #: the attempt as read on entering
        self.attempt: Attempt | None = None

    def __enter__(self) -> AttemptLease:
        attempt = self.attempt = self.store.attempt(self.attempt_id)
        if attempt is None:
            why = "there is no such attempt in the run history"
        elif attempt.state != "running":
            why = f"it is {attempt.state}" + (f" ({attempt.error})" if attempt.error else "")
        elif not self.store.take(self.attempt_id, owner=owner_id(), executor=executor_name(), flow_run_id=self.flow_run_id):
            why = f"its lease ran out (no heartbeat since {attempt.heartbeat_at.isoformat(timespec='seconds')}) or it ended meanwhile"
        else:
            why = ""
        if why:
            raise StaleAttempt(f"run attempt {self.attempt_id} is no longer the current one: {why}; not executing it")
        if self.tracker is not None:
            self.tracker.add(self.attempt_id)
        try:
            self._thread = threading.Thread(target=self._beat, name=f"autoflow-lease-{self.attempt_id}", daemon=True)
            self._thread.start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _beat(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop.wait(min(CANCEL_POLL, max(next_beat - time.monotonic(), 0.0))):
            if self.cancel_request is None:
                self._look_for_cancel()
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.interval
            try:
                held = self.store.renew(self.attempt_id)
            except Exception as exc:  # the next beat may get through; the lease allows for it
                log.warning("could not record a heartbeat for run attempt %d: %s", self.attempt_id, exc)
                continue
            if not held and not self._lost and not self._finishing:
                self._lost = True
                log.warning(
                    "run attempt %d is no longer held by this process (declared abandoned or cancelled meanwhile); "
                    "it goes on, but its end will not be recorded",
                    self.attempt_id,
                )

    def _look_for_cancel(self) -> None:
        try:
            request = self.store.cancel_requested(self.attempt_id)
        except Exception as exc:  # noqa: BLE001 - looked for again at the next poll
            log.debug("could not read whether run attempt %d is to stop: %s", self.attempt_id, exc)
            return
        if request is not None:
            self.cancel_request = request
            log.warning("run attempt %d: cancelled by %s; stopping its notebooks", self.attempt_id, request)
            cancel_attempt(self.attempt_id, f"cancelled by {request}")

    def finish(
        self, *, success: bool, error: str | None = None, notebooks: Sequence[str] = (), reports: Sequence[str] = (),
        cancelled: bool = False,
    ) -> bool:  # fmt: skip
        """Record the run's end (retrying for up to the lease while the database is away).

        Returns False if the attempt was no longer running (e.g. declared abandoned meanwhile).
        The heartbeat goes on until the end is written, so a database that comes back late in
        the retries does not find the attempt's lease run out.
        """
        self._finishing = True
        try:
            return self.store.finish(
                self.attempt_id, success=success, error=error, notebooks=notebooks, reports=reports,
                retry_for=self.lease_seconds, cancelled=cancelled,
            )  # fmt: skip
        finally:
            self.ended = True
            self._stop_beating()

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.ended:
                return
            if exc is None:
                reason = "the workflow run ended without recording how"
            elif isinstance(exc, Exception):
                reason = f"the workflow run crashed: {type(exc).__name__}: {exc}"
            else:  # KeyboardInterrupt, SystemExit, Prefect's TerminationSignal (SIGTERM)
                reason = f"interrupted: the workflow run was stopped ({type(exc).__name__}) before it finished"
            if self.cancel_request is not None:
                reason = f"cancelled by {self.cancel_request} ({reason})"
            try:
                self.finish(success=False, error=reason, cancelled=self.cancel_request is not None)
            except RunStoreError as failure:  # the lease runs out and the next tick expires it
                log.error("could not record the end of run attempt %d: %s", self.attempt_id, failure)
        finally:
            self._stop_beating()
            forget_attempt(self.attempt_id)
            if self.tracker is not None:
                self.tracker.discard(self.attempt_id)
