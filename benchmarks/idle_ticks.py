"""Memory over idle ticks: the service's tick, driven N times in one process with nothing to do.

    python -m benchmarks.idle_ticks N RESULT_JSON      (environment as for `python -m autoflow`)

A scheduled service ('* * * * *') would need N minutes for N ticks, so this does what
``Service._loop`` does between cron waits: ``run_tick(sensor)`` on one Sensor, one RunStore
and one Prefect API for the whole process (the service's own objects, built the way
``Service.run`` builds them). Before the first tick every due run is recorded as succeeded in
the run history, so each tick asks the date source, reads the history, plans, and finds
nothing due. The RSS of the process is read after every tick.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    ticks, result_path = int(sys.argv[1]), Path(sys.argv[2])
    from autoflow.prefect_env import configure_environment, prefect_api

    configure_environment()
    import psutil

    from autoflow.scan import current_plan
    from autoflow.settings import Settings
    from autoflow.sources import make_source
    from autoflow.spec.loader import load_config
    from autoflow.store import RunStore, owner_id

    me = psutil.Process()
    settings = Settings.from_env()
    config = load_config(settings.inputs_dir)
    (settings.outputs_dir / "logs").mkdir(parents=True, exist_ok=True)
    rss: list[int] = []
    seconds: list[float] = []
    errors: list[str] = []
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds) as store:
        store.upgrade()
        source = make_source(config.sensor.source, settings=settings, inputs_dir=config.inputs_dir, cdr_types=config.sensor.cdr_types)
        owner = owner_id()
        done = 0
        for run in current_plan(config, settings, store, source).due:
            attempt = store.claim(workflow=run.workflow, parameters=run.parameters, reference_date=run.reference_date,
                                  date_ranges=run.date_ranges, previous_attempt=run.previous_attempt, owner=owner)  # fmt: skip
            if attempt is not None:
                store.finish(attempt.id, success=True)
                done += 1
        with prefect_api(settings.outputs_dir / "logs", settings.log_level):
            from autoflow.sensor import Sensor, run_tick

            sensor = Sensor(config, settings, store)
            try:
                rss_before = me.memory_info().rss
                for _ in range(ticks):
                    started = time.perf_counter()
                    result = run_tick(sensor)
                    seconds.append(time.perf_counter() - started)
                    rss.append(me.memory_info().rss)
                    if result.error or result.due:
                        errors.append(result.error or f"{result.due} run(s) due on an idle tick")
            finally:
                sensor.close()
    result_path.write_text(json.dumps({"ticks": ticks, "recorded_done": done, "rss_before_first_tick": rss_before,
                                       "rss_after_tick": rss, "tick_seconds": seconds, "errors": errors}))  # fmt: skip
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
