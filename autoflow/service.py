"""The long-running service: the sensor on its cron schedule, stopping cleanly on SIGTERM/SIGINT.

Before every tick, and every :data:`~autoflow.reload.CHECK_INTERVAL` seconds while it waits for
one, it looks whether workflows.yml changed and runs with the new configuration if it is valid
(:mod:`autoflow.reload`).

Import this module only after :func:`autoflow.prefect_env.configure_environment`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from autoflow.heartbeat import HeartbeatWriter
from autoflow.pool import Tender, WorkPoolError
from autoflow.notebooks.kernel_pool import expect_kernels, first_kernels
from autoflow.prefect_env import prefect_api
from autoflow.reload import CHECK_INTERVAL, ConfigReloader
from autoflow.run_bounds import longest_allowed_run
from autoflow.sensor import Sensor, TickResult, run_tick
from autoflow.settings import Settings
from autoflow.site import SiteWatcher
from autoflow.spec.models import AutoFlowConfig
from autoflow.spec.schedule import describe, next_tick
from autoflow.store import RunStore
from autoflow.testhooks import TICK_VARIABLE, tick_seconds

log = logging.getLogger(__name__)

#: seconds between "still waiting" lines while a one-shot service waits for its submitted runs
PROGRESS_SECONDS = 60.0


def prepare_outputs(settings: Settings) -> None:
    """Create notebooks/, reports/ and logs/ in the outputs directory."""
    for path in (settings.notebooks_dir, settings.reports_dir, settings.outputs_dir / "logs"):
        path.mkdir(parents=True, exist_ok=True)


def needs_reports(config: AutoFlowConfig) -> bool:
    return any(nb.output is not None for wf in config.workflows.values() for nb in wf.notebooks.values())


class Service:
    """Runs ticks until stopped; one tick and out when the schedule is null."""

    def __init__(self, config: AutoFlowConfig, settings: Settings, *, load_config: Callable[[], AutoFlowConfig] | None = None) -> None:
        """``load_config`` reads workflows.yml again (default: from the inputs directory), raising
        :class:`autoflow.errors.ConfigError` with the problems as ``autoflow validate`` shows them."""
        self.config = config
        self.settings = settings
        self.stop_requested = threading.Event()
        self.sensor: Sensor | None = None
        self.heartbeat: HeartbeatWriter | None = None
        self.reloader = ConfigReloader(config, load=load_config or (lambda: _load_config(settings)), apply=self._apply)

    def run(self) -> int:
        """Exit status: 0 when every run succeeded (or nothing was due, or stopped by a signal), else 1."""
        settings = self.settings
        prepare_outputs(settings)
        if needs_reports(self.config):
            from autoflow.reports import check_report_tools, sweep_stale_workspaces

            check_report_tools()
            sweep_stale_workspaces(settings.reports_dir)
        if self.config.sensor.schedule is None and settings.work_pool is None:
            # one tick, now: its first runs' kernels start while the run history and Prefect start
            workflows = [self.config.workflows[name] for name in dict.fromkeys(e.workflow_name for e in self.config.sensor.workflows)]
            expect_kernels(first_kernels(workflows, runs=settings.max_parallel_runs), top_up=True)
        with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
            store.upgrade()
            log.info("run history: %s", settings.db_url_masked)
            # a one-off's runs start while a temporary Prefect server starts (recorded once it answers)
            one_off = self.config.sensor.schedule is None and settings.work_pool is None
            with prefect_api(settings.outputs_dir / "logs", settings.log_level, wait=not one_off) as api_url:
                log.info("Prefect API: %s", api_url)
                self.sensor = Sensor(self.config, settings, store)
                self.sensor.runtime.rebuild_site()  # the site shows the history from the start
                if self.config.notifications:
                    self.sensor.runtime.notifier.check()  # a missing secret or a URL Apprise rejects: stop now
                tender: Tender | None = None
                watcher: SiteWatcher | None = None
                if self.sensor.pool is not None:
                    self.sensor.pool.deploy()
                    tender = Tender(self.sensor.pool, interval=max(settings.run_lease_seconds / 3.0, 0.5)).start()
                    # runs end on the workers: the site is rebuilt here when the history says one ended
                    watcher = SiteWatcher(store.ended_mark, self.sensor.runtime.rebuild_site).start()
                self._install_signal_handlers()
                self.heartbeat = HeartbeatWriter(
                    settings.outputs_dir,
                    longest_run=longest_allowed_run(self.config, settings),
                    runs_busy_since=self.sensor.launcher.leases.busy_since,
                    config_state=lambda: self.reloader.state,
                ).start()
                try:
                    return self._loop(self.sensor)
                finally:
                    if tender is not None:
                        tender.stop()
                    if watcher is not None:
                        watcher.stop()
                        self.sensor.runtime.rebuild_site()  # a run may have ended since it last looked
                    self.heartbeat.stop()
                    self.sensor.close()  # waits for the report site's last build
                    index = settings.outputs_dir / "site" / "index.html"
                    if index.exists():
                        log.info("report site: %s", index)

    def _loop(self, sensor: Sensor) -> int:
        schedule = self.config.sensor.schedule
        if schedule is None:
            self._beat("ticking")
            result = run_tick(sensor)
            if result.submitted and not result.error:
                result = self._await_submitted(sensor, result)
            return self._exit_status(result)
        every = tick_seconds()
        log.info("schedule: %s", describe(schedule) if every is None else f"every {every:g} s ({TICK_VARIABLE}, for tests)")
        while not self.stop_requested.is_set():
            if not self._wait_for_tick(every):
                break
            self._reload()  # a valid change takes effect on this tick
            self._beat("ticking")
            run_tick(sensor)
        log.info("stopped")
        return 0

    def _next_tick(self, every: float | None) -> dt.datetime:
        """When the next tick is due, from the schedule the service runs now (``every`` seconds: tests)."""
        now = dt.datetime.now(dt.timezone.utc)
        schedule = self.config.sensor.schedule
        assert schedule is not None  # a running service keeps its schedule (autoflow.reload)
        when = next_tick(schedule, now) if every is None else now + dt.timedelta(seconds=every)
        log.info("next tick at %s UTC", when.strftime("%Y-%m-%d %H:%M:%S"))
        self._beat("waiting", when)
        return when

    def _wait_for_tick(self, every: float | None) -> bool:
        """Wait for the next tick, looking at workflows.yml every CHECK_INTERVAL seconds meanwhile
        (a new schedule moves the tick at once); False when stopped."""
        when = self._next_tick(every)
        while True:
            remaining = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
            if remaining <= 0:
                return True
            if self.stop_requested.wait(timeout=min(remaining, CHECK_INTERVAL)):
                return False
            if remaining > CHECK_INTERVAL:  # woke up to look, not to tick
                schedule = self.config.sensor.schedule
                self._reload()
                if self.config.sensor.schedule != schedule:
                    when = self._next_tick(every)

    def _reload(self) -> None:
        """Run with workflows.yml as it is now, if it changed and is valid (else go on as before)."""
        try:
            changed = self.reloader.check()
        except Exception:  # a bug in AutoFlow: the service goes on with the configuration it has
            log.exception("internal error while reloading workflows.yml; the service goes on with the configuration it has")
            return
        if changed and self.heartbeat is not None:
            self.heartbeat.write()  # autoflow health knows at once

    def _apply(self, config: AutoFlowConfig) -> None:
        """Make the service run with ``config`` (ConfigReloader's ``apply``): every holder of the
        configuration (the sensor, its date source, runtime, notifier and site; the heartbeat's
        bound on a run) gets it. Raises AutoFlowError, changing nothing, when it cannot be used."""
        assert self.sensor is not None
        if needs_reports(config) and not needs_reports(self.config):
            from autoflow.reports import check_report_tools

            check_report_tools()
        self.sensor.reconfigure(config)
        self.config = config
        if self.heartbeat is not None:
            self.heartbeat.longest_run = longest_allowed_run(config, self.settings)

    def _await_submitted(self, sensor: Sensor, result: TickResult) -> TickResult:
        return await_submitted(sensor, result, self.settings, self.stop_requested)

    def _beat(self, state: str, next_tick: dt.datetime | None = None) -> None:
        if self.heartbeat is not None:
            self.heartbeat.update(state, next_tick)

    def _exit_status(self, result: TickResult) -> int:
        if self.stop_requested.is_set():
            return 0
        if result.error:
            from autoflow.cli.app import Application

            Application().error(result.error)
            return 1
        return 0 if result.ok else 1

    # -- stopping ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop_requested.is_set():
            log.warning("%s again: stopping now", name)
            self._interrupt_and_exit(name)
        self.stop_requested.set()
        if self.sensor is not None:
            self.sensor.stopping.set()
        grace = self.settings.stop_grace_seconds
        log.info("%s received: starting no new runs; waiting up to %.0f s for running ones to finish", name, grace)
        threading.Thread(target=self._after_grace, args=(name, grace), name="autoflow-stop", daemon=True).start()

    def _after_grace(self, name: str, grace: float) -> None:
        deadline = threading.Event()
        deadline.wait(grace)
        self._interrupt_and_exit(name)

    def _interrupt_and_exit(self, name: str) -> None:
        sensor = self.sensor
        active = sensor.launcher.leases.active if sensor is not None else set()
        if active and sensor is not None:
            try:
                sensor.store.interrupt(active, f"interrupted: AutoFlow was stopped ({name}) before the run finished")
                log.warning("marked %d unfinished run(s) failed (interrupted); they run again on the next tick", len(active))
            except Exception as exc:  # the lease will expire them instead
                log.error("could not mark unfinished runs as interrupted: %s", exc)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        logging.shutdown()
        os._exit(0)  # kernels and the temporary Prefect server end with this process


def _load_config(settings: Settings) -> AutoFlowConfig:
    from autoflow.spec.loader import load_config

    return load_config(settings.inputs_dir)


def await_submitted(sensor: Sensor, result: TickResult, settings: Settings, stop_requested: threading.Event) -> TickResult:
    """One tick and out with a work pool (or a backfill, a rerun): wait (tending them) until the
    runs it submitted have ended, so the exit status says how they went.

    Says every minute how many still wait or execute. When the pool has had no live worker
    for longer than a worker may take to start a run, the runs still waiting are failed (and
    their flow runs cancelled), so nothing is left queued with no one to tend it.
    """
    pool = sensor.pool
    assert pool is not None
    pending = {launched.attempt.id for launched in result.results if launched.submitted and launched.attempt}
    log.info("waiting for the %d run(s) submitted to the work pool '%s' to end", len(pending), pool.name)
    next_report = time.monotonic() + PROGRESS_SECONDS
    workerless_since: float | None = None
    while pending and not stop_requested.wait(timeout=1.0):
        records = {i: sensor.store.attempt(i) for i in sorted(pending)}
        for attempt_id, record in records.items():
            if record is None or record.state == "running":
                continue
            pending.discard(attempt_id)
            label = f"{record.workflow} for {record.reference_date.isoformat()} (attempt {record.attempt})"
            if record.state == "success":
                result.succeeded += 1
                log.info("run %s: succeeded on %s", label, record.executor or "the work pool")
            elif record.state == "cancelled":
                result.cancelled += 1
                log.warning("run %s: cancelled on %s: %s", label, record.executor or "the work pool", record.error)
            else:
                result.failed += 1
                log.error("run %s: failed on %s: %s", label, record.executor or "the work pool", record.error)
        if not pending or time.monotonic() < next_report:
            continue
        next_report = time.monotonic() + PROGRESS_SECONDS
        queued = [r for i, r in records.items() if i in pending and r is not None and r.executor is None]
        try:
            workers = pool.describe(settings).online_workers
        except WorkPoolError as exc:
            log.warning("%s", exc)
            continue
        log.info(
            "%d run(s) still executing, %d waiting for a worker; work pool '%s': %s",
            len(pending) - len(queued), len(queued), pool.name,
            f"{len(workers)} live worker(s)" if workers else "no live worker (start one: autoflow worker)",
        )  # fmt: skip
        workerless_since = None if workers or not queued else (workerless_since or time.monotonic())
        if workerless_since is not None and time.monotonic() - workerless_since > pool.start_bound:
            reason = f"not started: the work pool '{pool.name}' had no live worker for {pool.start_bound:.0f} s"
            for record in queued:
                if sensor.store.fail_unstarted(record.id, reason):
                    pending.discard(record.id)
                    result.failed += 1
            pool.cancel_orphans([dataclasses.replace(r, error=reason) for r in queued])
            log.error("%s: %d run(s) failed; they run again when AutoFlow next runs", reason, len(queued))
    return result
