"""Launching workflow runs: claim in the run store, run the flow, keep the claim alive, record the end.

Used by the sensor tick (for every due run) and by ``autoflow trigger`` (for one run by hand).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from autoflow.flows import RunOutcome, RunRequest, workflow_run_with_runner
from autoflow.planning import DueRun
from autoflow.settings import Settings
from autoflow.store import Attempt, RunStore, owner_id
from autoflow.testhooks import fault_point

log = logging.getLogger(__name__)


class Heartbeat:
    """One thread per process that keeps every claimed attempt's heartbeat fresh.

    It beats at a third of the lease, so a live run is never mistaken for an abandoned one
    even if one beat is lost.
    """

    def __init__(self, store: RunStore, lease_seconds: float) -> None:
        self.store = store
        self.interval = max(lease_seconds / 3.0, 0.05)
        #: attempt id -> when this process started it
        self._started: dict[int, dt.datetime] = {}
        self._last_ended: dt.datetime | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="autoflow-heartbeat", daemon=True)
        self._thread.start()

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
        """When the oldest running attempt started; with none running, when the last one ended."""
        with self._lock:
            return min(self._started.values()) if self._started else self._last_ended

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            ids = self.active
            if not ids:
                continue
            try:
                self.store.heartbeat(ids)
            except Exception as exc:  # the next beat may get through; the lease allows for it
                log.warning("could not record a heartbeat for %d running run(s): %s", len(ids), exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class LaunchResult:
    """What happened to one due run: not claimed (another process has it), or its outcome."""

    run: DueRun
    attempt: Attempt | None
    outcome: RunOutcome | None

    @property
    def claimed(self) -> bool:
        return self.attempt is not None


class Launcher:
    """Claims and runs workflow runs for one AutoFlow process."""

    def __init__(self, store: RunStore, settings: Settings, *, trigger: str = "sensor") -> None:
        self.store = store
        self.settings = settings
        self.trigger = trigger
        self.owner = owner_id()
        self.heartbeat = Heartbeat(store, settings.run_lease_seconds)
        self._flow = workflow_run_with_runner(settings.max_parallel_notebooks)

    def close(self) -> None:
        self.heartbeat.stop()

    def launch(self, run: DueRun, *, should_start: Callable[[], bool] = lambda: True) -> LaunchResult:
        """Claim ``run`` and, if this process got it, execute it and record how it ended."""
        if not should_start():
            return LaunchResult(run, None, None)
        attempt = self.store.claim(
            workflow=run.workflow,
            parameters=run.parameters,
            reference_date=run.reference_date,
            date_ranges=run.date_ranges,
            previous_attempt=run.previous_attempt,
            owner=self.owner,
            trigger=self.trigger,
        )
        if attempt is None:
            return LaunchResult(run, None, None)
        fault_point("claimed")
        self.heartbeat.add(attempt.id)
        try:
            outcome = self._execute(run, attempt)
        finally:
            self.heartbeat.discard(attempt.id)
        return LaunchResult(run, attempt, outcome)

    def _execute(self, run: DueRun, attempt: Attempt) -> RunOutcome:
        label = f"{run.workflow} for {run.reference_date.isoformat()} (attempt {attempt.attempt})"
        log.info("run %s: started (%s)", label, run.reason)
        started = time.monotonic()
        request = RunRequest(run.workflow, run.parameters, run.reference_date, run.date_ranges, attempt.id)
        recorded = False  # the flow records its own end when it gets that far
        try:
            state = self._flow(
                **request.flow_parameters(),
                inputs_dir=str(self.settings.inputs_dir),
                outputs_dir=str(self.settings.outputs_dir),
                return_state=True,
            )
            data = state.result(raise_on_failure=False)
            if isinstance(data, dict) and "notebooks" in data:
                outcome = RunOutcome(data["notebooks"], data["reports"], data["error"], data["duration"])
                recorded = True
            else:
                outcome = RunOutcome(error=f"the workflow run crashed: {state.message or data}")
        except Exception as exc:  # the flow machinery itself failed: record it, never leave 'running'
            outcome = RunOutcome(error=f"the workflow run crashed: {type(exc).__name__}: {exc}")
        outcome.duration = time.monotonic() - started
        if not recorded:
            self.store.finish(
                attempt.id, success=outcome.success, error=outcome.error, notebooks=outcome.notebooks, reports=outcome.reports,
                retry_for=self.settings.run_lease_seconds,
            )  # fmt: skip
        if outcome.success:
            outputs = ", ".join([*outcome.notebooks, *outcome.reports])
            log.info("run %s: succeeded in %.1f s; outputs: %s", label, outcome.duration, outputs)
        else:
            log.error("run %s: failed after %.1f s: %s", label, outcome.duration, outcome.error)
        return outcome


T = TypeVar("T")


def run_in_worker_thread(function: Callable[[], T], name: str) -> T:
    """``function()`` in a worker thread, the main thread joining in short steps.

    Flows must not run in the main thread: there Prefect installs its own SIGTERM handler for
    the duration of the flow, and AutoFlow's graceful stop would never run. Short joins keep
    the main thread free to run signal handlers (and to receive KeyboardInterrupt).
    """
    box: list[T] = []
    errors: list[BaseException] = []
    context = contextvars.copy_context()  # Prefect's settings and run context live in context vars

    def body() -> None:
        try:
            box.append(context.run(function))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=body, name=name, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.5)
    if errors:
        raise errors[0]
    return box[0]


def detached_from_flow_run(function: Callable[..., LaunchResult]) -> Callable[..., LaunchResult]:
    """Wrap ``function`` to run in a copy of the caller's context (Prefect's settings live in
    context variables) but outside the caller's Prefect flow run.

    Workflow runs are top-level flow runs rather than subflows of the tick: a subflow costs an
    extra task run (an API round trip) per workflow run, and a top-level run is what a Prefect
    deployment on a worker would be, should workflow runs move there.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    context = contextvars.copy_context()
    context.run(FlowRunContext.__var__.set, None)
    context.run(TaskRunContext.__var__.set, None)

    def wrapper(*args: object, **kwargs: object) -> LaunchResult:
        return context.copy().run(function, *args, **kwargs)

    return wrapper
