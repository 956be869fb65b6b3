"""The available-dates sensor: one tick asks the date source, plans, and launches the due runs.

Each tick is a Prefect flow run named "available-dates-sensor"; the workflow runs it launches
run concurrently (up to ``AUTOFLOW_MAX_PARALLEL_RUNS``) and show under it in the Prefect UI.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from autoflow import deferred
from autoflow.errors import AutoFlowError
from autoflow.notebooks.kernel_pool import KernelKey, expect_kernels, first_notebooks, notebook_kernels
from autoflow.planning import DueRun, Plan
from autoflow.pool import WorkPool
from autoflow.scan import Scan, build_sources, current_plan
from autoflow.runs import Launcher, LaunchResult, detached_from_flow_run, run_in_worker_thread
from autoflow.runtime import RunRuntime
from autoflow.settings import Settings
from autoflow.sources import DateSource
from autoflow.spec.models import AutoFlowConfig, SourceSpec
from autoflow.store import RunStore

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """How one tick went. ``error`` is set when the tick itself failed (source or database)."""

    due: int = 0
    succeeded: int = 0
    failed: int = 0
    not_claimed: int = 0
    not_started: int = 0
    #: handed to the Prefect work pool (their outcome comes later, through the run history)
    submitted: int = 0
    #: stopped by `autoflow cancel`: what an operator asked for, not a failure
    cancelled: int = 0
    error: str | None = None
    results: list[LaunchResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0


class Sensor:
    """Everything a tick needs, built once per service process."""

    def __init__(self, config: AutoFlowConfig, settings: Settings, store: RunStore, *, sources: dict[SourceSpec, DateSource] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        #: one date source per distinct ``source:`` block (the sensor's, and entries' own)
        self.sources = sources or self._make_sources(config)
        #: the Prefect work pool runs are submitted to (AUTOFLOW_WORK_POOL), else None: they run here
        self.pool = WorkPool(settings, store) if settings.work_pool else None
        self.launcher = Launcher(store, settings, runtime=RunRuntime(settings, config=config, store=store), pool=self.pool)
        #: set to stop claiming new runs (SIGTERM); runs already started go on
        self.stopping = threading.Event()

    def _make_sources(self, config: AutoFlowConfig) -> dict[SourceSpec, DateSource]:
        """The date sources ``config`` describes (the one place a sensor builds them)."""
        return build_sources(config, self.settings, self.store)

    def reconfigure(self, config: AutoFlowConfig) -> None:
        """Plan and run with ``config`` from the next tick on: new date sources, and the runtime
        (runs, notifications, the report site) switched to it. Call between ticks.

        Raises :class:`AutoFlowError` when ``config`` cannot be used (a source or notification
        targets cannot be built, e.g. a missing setting or secret); nothing has changed then.
        """
        sources = self._make_sources(config)
        try:
            self.runtime.use_config(config)
        except BaseException:
            _close_sources(sources)
            raise
        old, self.config, self.sources = self.sources, config, sources
        _close_sources(old)

    def close(self) -> None:
        self.launcher.close()
        _close_sources(self.sources)

    def scan(self) -> Scan:
        """Ask the sources and the run history what is due now (reads only)."""
        return current_plan(self.config, self.settings, self.store, self.sources, detail=log.isEnabledFor(logging.DEBUG))

    def plan(self) -> Plan:
        return self.scan().plan

    def describe_sources(self) -> str:
        return "; ".join(source.describe() for source in self.sources.values())

    @property
    def runtime(self) -> RunRuntime:
        return self.launcher.runtime

    def tick(self) -> TickResult:
        """One tick: expire abandoned runs, plan, and launch every due run; then report what
        notifications could not be delivered."""
        try:
            return self._tick()
        finally:
            if self.config.notifications:
                self.runtime.notifier.flush_tick()

    def _tick(self) -> TickResult:
        result = TickResult()
        log.info("tick: asking %s for available dates", self.describe_sources())
        try:
            expired = self.store.expire_abandoned()
            if self.pool is not None:
                self.pool.cancel_orphans(expired)
            for attempt in expired:
                self.runtime.run_ended(attempt.id)
            scan = self.scan()
        except AutoFlowError as exc:
            result.error = str(exc)
            log.error("tick failed: %s", exc)
            return result
        current = scan.plan
        _log_plan(current)
        if self.config.notifications:
            self.runtime.notifier.check_late_data(self.config.sensor.workflows, scan.newest_dates(), dt.datetime.now(dt.timezone.utc))
        result = self.launch_all(current.due, result)
        if scan.errors:  # the other sources' runs went ahead; the tick still failed
            result.error = result.error or "; ".join(scan.errors)
        return result

    def launch_all(self, due: Sequence[DueRun], result: TickResult | None = None, *, trigger: str | None = None) -> TickResult:
        """Claim and launch ``due`` (here, up to ``AUTOFLOW_MAX_PARALLEL_RUNS`` at once, or
        submitted to the work pool); ``trigger`` (default the launcher's) is recorded with each."""
        result = result or TickResult()
        result.due = len(due)
        if not due:
            return result
        launch = detached_from_flow_run(self.launcher.launch)
        threads = self.settings.max_parallel_runs if self.pool is None else 4  # submitting only: quick
        if self.pool is None:
            launch = self._starting_kernels_ahead(launch, due, threads)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="autoflow-run") as pool:
            futures = [pool.submit(launch, run, should_start=lambda: not self.stopping.is_set(), trigger=trigger) for run in due]
            for future in futures:
                try:
                    launched = future.result()
                except AutoFlowError as exc:  # e.g. the database went away while claiming
                    log.error("could not launch a run: %s", exc)
                    result.error = result.error or str(exc)
                    continue
                result.results.append(launched)
                if launched.submitted is not None:
                    result.submitted += 1
                elif launched.outcome is None:
                    if self.stopping.is_set():
                        result.not_started += 1
                    else:
                        result.not_claimed += 1
                elif launched.outcome.success:
                    result.succeeded += 1
                elif launched.outcome.cancelled:
                    result.cancelled += 1
                else:
                    result.failed += 1
        if self.pool is not None:
            log.info(
                "tick done: %d due, %d submitted to the work pool '%s', %d failed to submit, %d taken by another AutoFlow process%s",
                result.due, result.submitted, self.pool.name, result.failed, result.not_claimed,
                f", {result.not_started} not started (stopping)" if result.not_started else "",
            )  # fmt: skip
            return result
        log.info(
            "%s done: %d due, %d succeeded, %d failed, %d taken by another AutoFlow process%s%s",
            "tick" if trigger is None else trigger, result.due, result.succeeded, result.failed, result.not_claimed,
            f", {result.cancelled} cancelled" if result.cancelled else "",
            f", {result.not_started} not started (stopping)" if result.not_started else "",
        )  # fmt: skip
        return result


    def _starting_kernels_ahead(self, launch: Callable[..., LaunchResult], due: Sequence[DueRun], threads: int) -> Callable[..., LaunchResult]:
        """``launch``, which also starts the kernels of the run that will follow it in its thread.

        The first notebooks of the first ``threads`` runs get their kernels now (they start while
        the runs are claimed and their flows set up); each run then asks for the kernels of the
        run that takes its place, ``threads`` further down the list, so they wait ready when it starts.
        """
        firsts = [self._first_kernels(run.workflow) for run in due]
        # those a one-off started before Prefect may be waiting already
        expect_kernels([key for keys in firsts[:threads] for key in keys], top_up=True)
        position = {id(run): i for i, run in enumerate(due)}

        def launching(run: DueRun, **kwargs: Any) -> LaunchResult:
            after = position[id(run)] + threads
            if after < len(firsts) and not self.stopping.is_set():
                expect_kernels(firsts[after])
            return launch(run, **kwargs)

        return launching

    def _first_kernels(self, workflow: str) -> list[KernelKey]:
        spec = self.config.workflows.get(workflow)
        return [] if spec is None else notebook_kernels(spec, first_notebooks(spec))


def _close_sources(sources: dict[SourceSpec, DateSource]) -> None:
    """Let go of what sources hold (a sql source's connection pool)."""
    for source in sources.values():
        close = getattr(source, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # closing must never stop a reload or a stop
                log.warning("could not close date source %s: %s", source.describe(), exc)


def _log_plan(current: Plan) -> None:
    for run in current.due:
        log.info("due: %s for %s (%s)", run.workflow, run.reference_date.isoformat(), run.reason)
    for skip in current.skipped:  # only planned in detail at DEBUG
        log.debug("skipped: %s for %s (%s)", skip.workflow, skip.reference_date.isoformat(), skip.reason)
    if current.skip_counts:
        summary = ", ".join(f"{n} {kind}" for kind, n in current.skips_by_kind().most_common())
        log.info("skipped %d candidate run(s): %s", current.skipped_total, summary)


#: the sensor a tick flow run works for, and where it puts its result (flow parameters must be JSON)
_tick_job: contextvars.ContextVar[tuple[Sensor, list[TickResult]]] = contextvars.ContextVar("autoflow_tick_job")


# no parameters to validate: validating would build a pydantic model class per tick (cycle garbage)
@flow(name="available-dates-sensor", persist_result=False, log_prints=False, validate_parameters=False)
def _sensor_tick_flow() -> dict[str, int]:
    sensor, results = _tick_job.get()
    result = sensor.tick()
    results.append(result)
    return {"due": result.due, "succeeded": result.succeeded, "failed": result.failed}


def run_tick(sensor: Sensor) -> TickResult:
    """Run one tick as a Prefect flow run (in a worker thread) and return its result."""
    results: list[TickResult] = []

    def body() -> object:
        token = _tick_job.set((sensor, results))
        try:
            return deferred.call_flow(_sensor_tick_flow, {}, name=None, max_workers=1)
        finally:
            _tick_job.reset(token)

    try:
        state = run_in_worker_thread(body, "autoflow-tick")
    except Exception as exc:  # Prefect itself failed (e.g. its API went away)
        return TickResult(error=f"the sensor tick crashed: {type(exc).__name__}: {exc}")
    if results:
        return results[0]
    return TickResult(error=f"the sensor tick crashed: {getattr(state, 'message', state)}")
