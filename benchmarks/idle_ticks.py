"""Memory over idle ticks: the service's tick, driven N times in one process with nothing to do.

    python benchmarks/idle_ticks.py N RESULT_JSON [--tracemalloc] [--gc-garbage]
    (environment as for `python -m autoflow`; PYTHONPATH chooses the autoflow package measured)

A scheduled service ('* * * * *') would need N minutes for N ticks, so this does what
``Service._loop`` does between cron waits: ``run_tick(sensor)`` (then ``release_free_memory()``
where the autoflow measured still has it: before 2026-12 it called glibc's malloc_trim after
every tick), on one Sensor, one RunStore and one Prefect API for the whole process (the
service's own objects, built the way ``Service.run`` builds them). Before the first tick every
due run is recorded as succeeded in the run history, so each tick asks the date source, reads
the history, plans, and finds nothing due. The RSS of the process, its threads and the objects
the cyclic garbage collector freed so far are read after every tick. With --tracemalloc,
Python's allocations are traced too and the places where traced memory grew from tick 50 to the
last tick are reported (which tells a leak in Python objects from native memory and allocator
fragmentation, which RSS alone cannot). After the last tick, the RSS once glibc's malloc_trim
has handed free heap pages back tells memory in use from free memory the allocator keeps. With --gc-garbage, the reference-cycle garbage of ticks
101-120 is kept (gc.DEBUG_SAVEALL) and reported by type: what each tick leaves for the
collector.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

SNAPSHOT_TICK = 50
#: --gc-garbage: the ticks whose cyclic garbage is kept and counted
GARBAGE_TICKS = range(101, 121)


def _growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    """The 12 call stacks whose traced memory grew most between the snapshots."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    return [{"kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff,
             "stack": [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in s.traceback][-8:]}
            for s in stats[:12] if s.size_diff > 0]  # fmt: skip


def _rss_after_malloc_trim(me: Any) -> int | None:
    """RSS once glibc has handed its free heap pages back (None without glibc): what of the RSS
    after the last tick is memory in use, and what is free memory the allocator keeps."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    rss: int = me.memory_info().rss
    return rss


def _kind(thing: object) -> str:
    """A garbage object's type; for classes and functions (things rebuilt per call), their name."""
    if isinstance(thing, type) or type(thing).__name__ == "function":
        return f"{type(thing).__name__} {getattr(thing, '__module__', '?')}.{getattr(thing, '__qualname__', '?')}"
    return f"{type(thing).__module__}.{type(thing).__qualname__}"


def main() -> int:
    ticks, result_path = int(sys.argv[1]), Path(sys.argv[2])
    trace = "--tracemalloc" in sys.argv[3:]
    keep_garbage = "--gc-garbage" in sys.argv[3:]
    if trace:
        tracemalloc.start(16)
    traced: list[int] = []
    threads: list[int] = []
    collected_after: list[int] = []
    garbage: collections.Counter[str] = collections.Counter()
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
    collected = [0]

    def count_collected(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected[0] += info["collected"]

    gc.callbacks.append(count_collected)
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
            from autoflow.sensor import Sensor, run_tick

            try:
                from autoflow.native_memory import release_free_memory  # type: ignore[import-not-found]
            except ImportError:
                release_free_memory = None

            sensor = Sensor(config, settings, store)
            try:
                rss_before = me.memory_info().rss
                for tick in range(1, ticks + 1):
                    if keep_garbage and tick == GARBAGE_TICKS.start:
                        gc.collect()
                        gc.set_debug(gc.DEBUG_SAVEALL)
                    started = time.perf_counter()
                    result = run_tick(sensor)
                    if release_free_memory is not None:
                        release_free_memory()
                    seconds.append(time.perf_counter() - started)
                    rss.append(me.memory_info().rss)
                    threads.append(me.num_threads())
                    collected_after.append(collected[0])
                    if keep_garbage and tick == GARBAGE_TICKS.stop - 1:
                        gc.collect()
                        gc.set_debug(0)
                        garbage.update(_kind(o) for o in gc.garbage)
                        gc.garbage.clear()
                    if trace:
                        traced.append(tracemalloc.get_traced_memory()[0])
                        if len(rss) in (SNAPSHOT_TICK, ticks):
                            snapshots.append(tracemalloc.take_snapshot())
                    if result.error or result.due:
                        errors.append(result.error or f"{result.due} run(s) due on an idle tick")
            finally:
                sensor.close()
    result: dict[str, Any] = {"ticks": ticks, "recorded_done": done, "rss_before_first_tick": rss_before,
                              "rss_after_tick": rss, "threads_after_tick": threads, "gc_collected_after_tick": collected_after, "tick_seconds": seconds, "errors": errors}  # fmt: skip
    result["autoflow"] = str(Path(sys.modules["autoflow"].__file__ or "?").parent)
    result["rss_after_malloc_trim"] = _rss_after_malloc_trim(me)
    if keep_garbage:
        result["gc_garbage"] = {"ticks": f"{GARBAGE_TICKS.start}-{GARBAGE_TICKS.stop - 1}", "by_type": garbage.most_common(80)}
    if trace:
        result["traced_after_tick"] = traced
        result["traced_growth"] = _growth(*snapshots) if len(snapshots) == 2 else []
    result_path.write_text(json.dumps(result))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
