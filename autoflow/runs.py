"""Launching workflow runs: claim in the run store, then start the ``workflow-run`` flow here, or
submit it to a Prefect work pool (:mod:`autoflow.pool`) when ``AUTOFLOW_WORK_POOL`` is set.

Used by the sensor tick (for every due run) and by ``autoflow trigger`` (for one run by hand).
The flow owns the attempt from there (:mod:`autoflow.lease`): it heartbeats it and records its
end; the launcher reads that end back from the run store.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from autoflow import deferred
from autoflow import runtime as runtimes
from autoflow.errors import AutoFlowError
from autoflow.flows import RunOutcome, RunRequest, flow_run_name, workflow_run_with_runner
from autoflow.lease import LeaseTracker
from autoflow.notebooks.kernel_pool import close_kernel_pool
from autoflow.planning import DueRun
from autoflow.pool import WorkPool
from autoflow.runtime import RunRuntime
from autoflow.settings import Settings
from autoflow.store import Attempt, RunStore, owner_id
from autoflow.testhooks import fault_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchResult:
    """What happened to one due run: not claimed (another process has it), or its outcome."""

    run: DueRun
    attempt: Attempt | None
    outcome: RunOutcome | None
    #: the Prefect flow run it was submitted as, when a work pool executes it (no outcome yet)
    submitted: str | None = None

    @property
    def claimed(self) -> bool:
        return self.attempt is not None


class Launcher:
    """Claims workflow runs for one AutoFlow process and runs their flows here.

    ``runtime``: what the flows share (default: one over ``store`` and ``settings``); the
    launcher installs it for this process until :meth:`close`.
    """

    def __init__(
        self, store: RunStore, settings: Settings, *, trigger: str = "sensor", runtime: RunRuntime | None = None,
        pool: WorkPool | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.settings = settings
        self.trigger = trigger
        self.owner = owner_id()
        self.runtime = runtime or RunRuntime(settings, store=store)
        #: where runs execute: a Prefect work pool, or (None) this process
        self.pool = pool
        self._previous = runtimes.install(self.runtime)
        self._flow = workflow_run_with_runner(settings.max_parallel_notebooks)

    @property
    def leases(self) -> LeaseTracker:
        """The attempts whose flows hold their leases in this process."""
        return self.runtime.leases

    def close(self) -> None:
        if runtimes.installed() is self.runtime:
            runtimes.install(self._previous)
        self.runtime.close()
        close_kernel_pool()  # kernels started for runs that will not come

    def launch(self, run: DueRun, *, should_start: Callable[[], bool] = lambda: True, trigger: str | None = None) -> LaunchResult:
        """Claim ``run`` (recording ``trigger``, default the launcher's) and, if this process got
        it, run its flow and return how it ended."""
        if not should_start():
            return LaunchResult(run, None, None)
        attempt = self.store.claim(
            workflow=run.workflow,
            parameters=run.parameters,
            reference_date=run.reference_date,
            date_ranges=run.date_ranges,
            previous_attempt=run.previous_attempt,
            owner=self.owner,
            trigger=trigger or self.trigger,
        )
        if attempt is None:
            return LaunchResult(run, None, None)
        fault_point("claimed")
        label = f"{run.workflow} for {run.reference_date.isoformat()} (attempt {attempt.attempt})"
        log.info("run %s: started (%s)", label, run.reason)
        started = time.monotonic()
        request = RunRequest(run.workflow, run.parameters, run.reference_date, run.date_ranges, attempt.id)
        if self.pool is not None:
            return self._submit(run, attempt, request, label)
        problem: str | None
        parameters = {**request.flow_parameters(), "inputs_dir": str(self.settings.inputs_dir), "outputs_dir": str(self.settings.outputs_dir)}
        try:
            state: Any = deferred.call_flow(
                self._flow, parameters, name=flow_run_name(parameters), max_workers=self.settings.max_parallel_notebooks,
                on_recorded=lambda flow_run_id: self.store.set_flow_run_id(attempt.id, flow_run_id),
            )  # fmt: skip
            problem = state.message
        except Exception as exc:  # the flow machinery itself failed
            problem = f"{type(exc).__name__}: {exc}"
        return LaunchResult(run, attempt, self._outcome(attempt, label, problem, time.monotonic() - started))

    def _submit(self, run: DueRun, attempt: Attempt, request: RunRequest, label: str) -> LaunchResult:
        """Hand the claimed attempt to the work pool; if that fails, the attempt fails with the reason."""
        assert self.pool is not None
        parameters = {
            **request.flow_parameters(), "inputs_dir": str(self.settings.inputs_dir), "outputs_dir": str(self.settings.outputs_dir),
            "lease_seconds": self.settings.run_lease_seconds,  # the service's: it judges the heartbeats
        }  # fmt: skip
        try:
            flow_run_id = self.pool.submit(attempt, parameters, flow_run_name(parameters))
        except AutoFlowError as exc:
            log.error("run %s: failed: %s", label, exc)
            # only while no worker has taken it: a flow run created before the error may be running it
            self.store.fail_unstarted(attempt.id, f"not started: {exc}")
            return LaunchResult(run, attempt, RunOutcome(error=str(exc)))
        log.info("run %s: submitted to the work pool '%s' (Prefect flow run %s)", label, self.pool.name, flow_run_id)
        return LaunchResult(run, attempt, None, submitted=flow_run_id)

    def _outcome(self, attempt: Attempt, label: str, problem: str | None, duration: float) -> RunOutcome:
        """How the run ended, as its flow recorded it in the run store.

        A flow that never took the attempt's lease (Prefect failed before the flow's body ran)
        recorded nothing: the claim is handed back as failed, so it is not left ``running``
        (the flow has returned, so no lease of this process holds the attempt any more).
        """
        record = self.store.attempt(attempt.id)
        if record is not None and record.state == "running":
            crash = f"the workflow run crashed before it started: {problem or 'no reason given'}"
            log.error("run %s: failed after %.1f s: %s", label, duration, crash)
            self.store.finish(attempt.id, success=False, error=crash, retry_for=self.settings.run_lease_seconds)
            record = self.store.attempt(attempt.id)
        if record is None:
            return RunOutcome(error=f"run attempt {attempt.id} is missing from the run history", duration=duration)
        error = record.error if record.state != "success" else None
        if record.state != "success" and not error:
            error = f"the run ended {record.state}"
        return RunOutcome(list(record.notebooks), list(record.reports), error, duration, cancelled=record.state == "cancelled")


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
    context.run(FlowRunContext.__var__.set, None)  # type: ignore[arg-type]
    context.run(TaskRunContext.__var__.set, None)  # type: ignore[arg-type]
    context.run(deferred.detach)  # nor in a deferred tick's

    def wrapper(*args: object, **kwargs: object) -> LaunchResult:
        return context.copy().run(function, *args, **kwargs)

    return wrapper
