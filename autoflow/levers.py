"""Runs an operator starts by hand (``autoflow backfill``, ``autoflow rerun``): claimed like the
sensor's, recorded with their trigger, and executed where the service executes runs — here, or
on the work pool's workers (``AUTOFLOW_WORK_POOL``), waiting until they have ended.

Import this module only after :func:`autoflow.prefect_env.configure_environment`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from autoflow.planning import DueRun
from autoflow.pool import Tender
from autoflow.prefect_env import prefect_api
from autoflow.runs import run_in_worker_thread
from autoflow.sensor import Sensor, TickResult
from autoflow.service import await_submitted, needs_reports, prepare_outputs
from autoflow.settings import Settings
from autoflow.spec.models import AutoFlowConfig
from autoflow.store import RunStore

log = logging.getLogger(__name__)


def launch_by_hand(
    config: AutoFlowConfig, settings: Settings, store: RunStore, due: Sequence[DueRun], *, trigger: str
) -> TickResult:
    """Claim and run ``due`` (in their order) as ``trigger``; returns how they went.

    SIGTERM or Ctrl-C stops claiming; runs executing here are recorded interrupted.
    """
    prepare_outputs(settings)
    if needs_reports(config):
        from autoflow.reports import check_report_tools

        check_report_tools()
    stop = threading.Event()
    # runs start while a temporary Prefect server starts, and are recorded in Prefect once it answers
    with prefect_api(settings.outputs_dir / "logs", settings.log_level, wait=False):
        sensor = Sensor(config, settings, store)
        tender: Tender | None = None
        if sensor.pool is not None:
            sensor.pool.deploy()
            tender = Tender(sensor.pool, interval=max(settings.run_lease_seconds / 3.0, 0.5)).start()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop.set()
            sensor.stopping.set()
            raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if threading.current_thread() is threading.main_thread() else {}
        try:
            result = run_in_worker_thread(lambda: sensor.launch_all(due, trigger=trigger), f"autoflow-{trigger}")
            if result.submitted and not result.error:
                result = await_submitted(sensor, result, settings, stop)
                sensor.runtime.rebuild_site()  # the runs ended on workers, which leave the site to us
            return result
        except KeyboardInterrupt:
            active = sensor.launcher.leases.active
            store.interrupt(active, f"interrupted: autoflow {trigger} was stopped before the run finished")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if tender is not None:
                tender.stop()
            sensor.close()
