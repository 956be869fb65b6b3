"""B2 overhead per run: AutoFlow's time per workflow run beyond papermill's execution of its notebooks.

Measured on the B1 workload with ``AUTOFLOW_MAX_PARALLEL_RUNS=1`` (runs one after another, so
nothing else competes for the CPU while a run's own bookkeeping happens) against the
already-running Prefect server. For every run but the first of each process (steady state):

- ``overhead``: claim (``started_at``) to recorded end (``finished_at``) minus the time its
  notebooks were executing (``metadata.autoflow`` of each executed notebook, kernel start
  included), split into claim → first notebook, between notebooks, last notebook → recorded end;
- ``cycle_overhead``: claim to the *next* claim minus the notebooks, which adds what happens
  after the recorded end (flow tear-down, final state, the next claim). This is the honest
  per-run cost of a backlog worked through one run at a time.

Then py-spy profiles one such one-shot (wall clock, ``--idle``) and one B1-like one-shot with
the default parallelism (CPU only), and says where the time beyond the notebooks goes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks import history, profiles
from benchmarks.common import PYTHON, log, run_process, summarize
from benchmarks.context import Bench

PROFILE_RATE_WALL = 25
PROFILE_RATE_CPU = 50


def _sequential(bench: Bench, out: Path, *, command_prefix: list[str] | None = None, parallel_runs: int = 1) -> tuple[Any, list[history.RunTiming]]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = bench.autoflow_env(out, api=True, AUTOFLOW_MAX_PARALLEL_RUNS=str(parallel_runs))
    proc = run_process([*(command_prefix or []), PYTHON, "-m", "autoflow"], env=env, cwd=out,
                       timeout=bench.cfg.process_timeout, log_file=out.parent / f"{out.name}.log")  # fmt: skip
    if not proc.ok:
        bench.error(f"B2 {out.name}: exit {proc.returncode}; log {out.parent / (out.name + '.log')}")
    return proc, history.read_runs(bench.sqlite_url(out))


def run(bench: Bench) -> dict[str, Any]:
    root = bench.work / "b2"
    pooled: dict[str, list[float]] = {}
    walls = []
    for i in range(bench.cfg.b2_repeats):
        proc, runs = _sequential(bench, root / f"sequential-{i + 1}")
        walls.append(proc.wall)
        for key, values in history.per_run_overheads(runs, skip_first=1).items():
            pooled.setdefault(key, []).extend(values)
        steady = history.per_run_overheads(runs, skip_first=1)
        med = summarize(steady["overhead"]).get("median")
        log(f"B2 sequential {i + 1}/{bench.cfg.b2_repeats}: {proc.wall:.1f} s, {len(runs)} runs, median overhead {med} s")
    result: dict[str, Any] = {
        "method": "AUTOFLOW_MAX_PARALLEL_RUNS=1, PREFECT_API_URL = the running server; per run, first run of each process left out",
        "processes": bench.cfg.b2_repeats,
        "process_wall": summarize(walls),
        "per_run": {key: summarize(values) | {"values": None} for key, values in pooled.items() if values},
    }
    if bench.py_spy is not None:
        result["profile"] = profile(bench, root)
    else:
        result["profile"] = None
        bench.notes.append("B2 profile skipped: py-spy is not built (run the full benchmark, or --profile build)")
    return result


def profile(bench: Bench, root: Path) -> dict[str, Any]:
    """Wall-clock profile of a sequential one-shot, CPU profile of a parallel one (py-spy)."""
    assert bench.py_spy is not None
    profiles_dir = bench.results_dir / "profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for name, rate, idle, parallel in (("wall-sequential", PROFILE_RATE_WALL, True, 1), ("cpu-parallel", PROFILE_RATE_CPU, False, bench.cfg.max_parallel_runs)):
        raw = profiles_dir / f"b2-{name}.txt"
        spy = [str(bench.py_spy), "record", "--rate", str(rate), "--threads", "--nonblocking", "--format", "raw", "-o", str(raw)]
        if idle:
            spy.append("--idle")
        proc, runs = _sequential(bench, root / f"profile-{name}", command_prefix=[*spy, "--"], parallel_runs=parallel)
        if not raw.is_file():
            bench.error(f"B2 profile {name}: py-spy wrote nothing (see {root / f'profile-{name}.log'})")
            continue
        summary = profiles.summarize_profile(raw, rate, runs=max(len(runs), 1))
        summary["process_wall"] = round(proc.wall, 2)
        summary["runs"] = len(runs)
        summary["timeline"] = history.timeline(runs, proc.launched_at, proc.launched_at + proc.wall)
        out[name] = summary
        log(f"B2 profile {name}: {proc.wall:.1f} s, {summary['samples']} samples -> {raw}")
    return out
