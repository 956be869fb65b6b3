"""Memory over idle ticks: the service's tick, driven N times in one process with nothing to do.

    python -m benchmarks.idle_ticks N RESULT_JSON [--tracemalloc]   (environment as for `python -m autoflow`)

A scheduled service ('* * * * *') would need N minutes for N ticks, so this does what
``Service._loop`` does between cron waits: ``run_tick(sensor)`` then ``release_free_memory()``,
on one Sensor, one RunStore and one Prefect API for the whole process (the service's own
objects, built the way ``Service.run`` builds them). Before the first tick every due run is
recorded as succeeded in the run history, so each tick asks the date source, reads the
history, plans, and finds nothing due. The RSS of the process is read after every tick. With --tracemalloc, Python's
allocations are traced too and the places where traced memory grew from tick 50 to the last
tick are reported (which tells a leak in Python objects from native memory and allocator
fragmentation, which RSS alone cannot).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

SNAPSHOT_TICK = 50


def _growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    """The 12 call stacks whose traced memory grew most between the snapshots."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    return [{"kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff,
             "stack": [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in s.traceback][-8:]}
            for s in stats[:12] if s.size_diff > 0]  # fmt: skip


def main() -> int:
    ticks, result_path = int(sys.argv[1]), Path(sys.argv[2])
    trace = "--tracemalloc" in sys.argv[3:]
    if trace:
        tracemalloc.start(16)
    traced: list[int] = []
    threads: list[int] = []
    snapshots: list[tracemalloc.Snapshot] = []
    from autoflow.prefect_env import configure_environment, prefect_api

    configure_environment()
    import psutil

    from autoflow.scan import current_plan
    from autoflow.settings import Settings
    from autoflow.sources import SourceContext, make_source
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
        source = make_source(config.sensor.source, SourceContext(settings, config.inputs_dir))
        owner = owner_id()
        done = 0
        for run in current_plan(config, settings, store, {config.sensor.source: source}).plan.due:
            attempt = store.claim(workflow=run.workflow, parameters=run.parameters, reference_date=run.reference_date,
                                  date_ranges=run.date_ranges, previous_attempt=run.previous_attempt, owner=owner)  # fmt: skip
            if attempt is not None:
                store.finish(attempt.id, success=True)
                done += 1
        with prefect_api(settings.outputs_dir / "logs", settings.log_level):
            from autoflow.native_memory import release_free_memory
            from autoflow.sensor import Sensor, run_tick

            sensor = Sensor(config, settings, store)
            try:
                rss_before = me.memory_info().rss
                for _ in range(ticks):
                    started = time.perf_counter()
                    result = run_tick(sensor)
                    release_free_memory()
                    seconds.append(time.perf_counter() - started)
                    rss.append(me.memory_info().rss)
                    threads.append(me.num_threads())
                    if trace:
                        traced.append(tracemalloc.get_traced_memory()[0])
                        if len(rss) in (SNAPSHOT_TICK, ticks):
                            snapshots.append(tracemalloc.take_snapshot())
                    if result.error or result.due:
                        errors.append(result.error or f"{result.due} run(s) due on an idle tick")
            finally:
                sensor.close()
    result: dict[str, Any] = {"ticks": ticks, "recorded_done": done, "rss_before_first_tick": rss_before,
                              "rss_after_tick": rss, "threads_after_tick": threads, "tick_seconds": seconds, "errors": errors}  # fmt: skip
    if trace:
        result["traced_after_tick"] = traced
        result["traced_growth"] = _growth(*snapshots) if len(snapshots) == 2 else []
    result_path.write_text(json.dumps(result))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
