"""B1 backlog: every contender executes the same two notebooks for every due date, from nothing.

Contenders, alternating round by round (the order rotates each round):

- ``floor``: a plain loop calling ``papermill.execute_notebook``, one notebook after another;
- ``floor-2threads``: the same loop over 2 threads (one per core here; dates from a queue, each
  date's compute then render in one thread): the bar for a scheduler running 2 runs at once;
- ``ploomber``: Ploomber 0.23 in its own venv, a DAG of NotebookRunner tasks built with its
  Parallel executor (2 processes), and ``ploomber-serial`` (its default Serial executor) in full mode;
- ``autoflow-api``: ``python -m autoflow`` one-shot with PREFECT_API_URL pointing at a Prefect
  server the harness started before the benchmark (already running, warm);
- ``autoflow-api-nopool``: ``autoflow-api`` with ``AUTOFLOW_KERNEL_POOL=0`` (no pre-started kernels);
- ``autoflow-temp``: the same without PREFECT_API_URL, so AutoFlow starts its temporary server.

Each is a whole process, timed from fork to exit, with its process tree's RSS sampled. The
outputs are checked: the number of executed notebooks, and every date's glued totals against
the values computed here. For AutoFlow, the run history and the notebooks' stamped timings
also give the time from first claim to last recorded end (no start-up), the start-up itself,
and the per-run overhead beyond papermill.

Two more benchmarks come from the same runs, with no extra process:

- B6, per-notebook overhead: each executed notebook's papermill wall time minus its cells'
  papermill durations (kernel start and shutdown, papermill's own work), steady state;
- B8, orchestration CPU: the CPU time of each contender's whole process tree (getrusage
  RUSAGE_CHILDREN around it; plus the harness's Prefect server's CPU meanwhile), AutoFlow's
  minus ``floor-2threads``' of the same round, per workflow run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmarks import history, workload
from benchmarks.common import PYTHON, ProcessRun, base_env, cpu_of_tree, log, ratio, run_process, summarize
from benchmarks.context import Bench

CONTENDERS_DIR = Path(__file__).resolve().parent / "contenders"
#: threads of the floor-2threads contender: AutoFlow's runs at once (AUTOFLOW_MAX_PARALLEL_RUNS), one per core here
FLOOR_THREADS = 2
#: AutoFlow contenders, pool on and off, in the order the tables list them
AUTOFLOW = ("autoflow-api", "autoflow-api-nopool", "autoflow-temp")
#: what AutoFlow is compared with (when run)
OTHERS = ("floor", "floor-2threads", "ploomber", "ploomber-serial")


@dataclass
class Contender:
    name: str
    description: str
    command: Callable[[Path, Path], list[str]]  # (outputs dir, runs file) -> argv
    env: Callable[[Path, bool], dict[str, str]]  # (outputs dir, warm-up?) -> environment
    autoflow: bool = False
    #: runs it starts at once: the first this many runs of a process are its cold start (B6)
    parallel: int = 1


def contenders(bench: Bench) -> list[Contender]:
    inputs = bench.b1_inputs
    found: list[Contender] = [
        Contender(
            "floor", "plain loop over papermill.execute_notebook, sequential (AutoFlow's venv)",
            lambda out, runs: [PYTHON, str(CONTENDERS_DIR / "floor.py"), str(inputs), str(out), str(runs)],
            lambda out, warm: base_env(),
        ),
        Contender(
            "floor-2threads", f"the same loop over {FLOOR_THREADS} threads, dates from a queue, compute then render per date (AutoFlow's venv)",
            lambda out, runs: [PYTHON, str(CONTENDERS_DIR / "floor_threads.py"), str(inputs), str(out), str(runs), str(FLOOR_THREADS)],
            lambda out, warm: base_env(), parallel=FLOOR_THREADS,
        ),
    ]  # fmt: skip
    if bench.ploomber_python is not None:
        ploomber = str(bench.ploomber_python)
        found.append(Contender(
            "ploomber", "Ploomber 0.23.3 DAG of NotebookRunner tasks, Parallel executor (2 processes)",
            lambda out, runs: [ploomber, str(CONTENDERS_DIR / "ploomber_dag.py"), str(inputs), str(out), str(runs), "2"],
            lambda out, warm: base_env(), parallel=2,
        ))  # fmt: skip
        if bench.cfg.ploomber_serial:
            found.append(Contender(
                "ploomber-serial", "Ploomber 0.23.3 DAG of NotebookRunner tasks, default Serial executor",
                lambda out, runs: [ploomber, str(CONTENDERS_DIR / "ploomber_dag.py"), str(inputs), str(out), str(runs), "1"],
                lambda out, warm: base_env(),
            ))  # fmt: skip
    found.append(Contender(
        "autoflow-api", "python -m autoflow one-shot, PREFECT_API_URL = a Prefect server already running",
        lambda out, runs: [PYTHON, "-m", "autoflow"], lambda out, warm: bench.autoflow_env(out, api=True, warmup=warm),
        autoflow=True, parallel=bench.cfg.max_parallel_runs,
    ))  # fmt: skip
    found.append(Contender(
        "autoflow-api-nopool", "autoflow-api with AUTOFLOW_KERNEL_POOL=0 (a kernel started for each notebook)",
        lambda out, runs: [PYTHON, "-m", "autoflow"], lambda out, warm: bench.autoflow_env(out, api=True, warmup=warm, AUTOFLOW_KERNEL_POOL="0"),
        autoflow=True, parallel=bench.cfg.max_parallel_runs,
    ))  # fmt: skip
    found.append(Contender(
        "autoflow-temp", "python -m autoflow one-shot, no PREFECT_API_URL (AutoFlow starts a temporary server)",
        lambda out, runs: [PYTHON, "-m", "autoflow"], lambda out, warm: bench.autoflow_env(out, api=False, warmup=warm),
        autoflow=True, parallel=bench.cfg.max_parallel_runs,
    ))  # fmt: skip
    wanted = bench.cfg.b1_contenders
    if wanted is None:
        return found
    unknown = set(wanted) - {c.name for c in found}
    if unknown:
        bench.error(f"B1: no contender {', '.join(sorted(unknown))} (these can run: {', '.join(c.name for c in found)})")
    return [c for c in found if c.name in wanted]


def _one(bench: Bench, contender: Contender, out: Path, runs_file: Path, expected: dict[str, tuple[int, int]], label: str) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = contender.env(out, label == "warm-up")
    server_pid = bench.prefect.process.pid if bench.prefect is not None and bench.prefect.process is not None else None
    server_before = cpu_of_tree(server_pid) if server_pid else 0.0
    proc: ProcessRun = run_process(
        contender.command(out, runs_file), env=env, cwd=out, timeout=bench.cfg.process_timeout,
        log_file=out.parent / f"{out.name}.log",
    )  # fmt: skip
    server_cpu = cpu_of_tree(server_pid) - server_before if server_pid else 0.0
    produced = workload.inspect_outputs(out)
    cold, steady = workload.first_runs_apart(workload.notebook_overheads(out), contender.parallel)
    record: dict[str, Any] = {
        "wall": proc.wall,
        "returncode": proc.returncode,
        "peak_main_rss_mib": proc.tree.peak_main_rss / 2**20,
        "peak_tree_rss_mib": proc.tree.peak_tree_rss / 2**20,
        "max_concurrent_kernels": proc.tree.max_kernels,
        "first_kernel_after": proc.first_kernel_after(),
        "outputs": produced.summary(),
        "kernel_wait_per_notebook": summarize(workload.kernel_waits(out)) | {"values": None},
        "outputs_match": produced.totals == expected and not produced.incomplete and produced.notebooks == 2 * len(expected),
        # B6: every notebook's wall beyond its cells, the first runs of the process left out
        "notebook_overhead": [o.overhead for o in steady],
        "notebook_overhead_first_runs": [o.overhead for o in cold],
        # B8: CPU of the process tree (reaped descendants), the Prefect server's meanwhile, and the check
        "cpu_tree": proc.cpu,
        "cpu_tree_sampled": proc.tree.sampled_cpu(),
        "cpu_prefect_server": server_cpu if "PREFECT_API_URL" in env else None,
        "cpu_prefect_server_idle": server_cpu if "PREFECT_API_URL" not in env else None,
        "orphans": len(proc.orphans),
        "processes_seen": len(proc.tree.cpu_seen),
    }
    if proc.orphans:
        bench.notes.append(f"B1 {contender.name} ({label}): {len(proc.orphans)} descendant(s) still running after it exited; their CPU is not counted")
    if contender.autoflow:
        runs = history.read_runs(bench.sqlite_url(out))
        record["timeline"] = history.timeline(runs, proc.launched_at, proc.launched_at + proc.wall)
        record["per_run"] = history.per_run_overheads(runs, skip_first=bench.cfg.max_parallel_runs)
    status = "ok" if proc.ok and record["outputs_match"] else "FAILED"
    log(f"B1 {label} {contender.name}: {proc.wall:.1f} s, {produced.notebooks} notebooks, {status}")
    if status != "ok":
        record["log_tail"] = proc.stderr_tail
        bench.error(f"B1 {contender.name} ({label}): exit {proc.returncode}, outputs_match={record['outputs_match']}; log {out.parent / (out.name + '.log')}")
    return record


def run(bench: Bench) -> dict[str, Any]:
    cfg = bench.cfg
    runs = workload.due_runs(bench.b1_dates)
    expected = workload.expected_totals(runs)
    root = bench.work / "b1"
    runs_file = workload.write_runs(bench.work / "b1-runs.json", runs)
    all_contenders = contenders(bench)
    names = [c.name for c in all_contenders]
    if cfg.warmup:
        warm_runs = workload.write_runs(bench.work / "b1-warmup-runs.json", runs[:2])
        warm_expected = workload.expected_totals(runs[:2])
        for contender in all_contenders:
            # AutoFlow's warm-up asks a second fake FlowAPI that serves only the first 3 dates
            _one(bench, contender, root / contender.name / "warmup", warm_runs, warm_expected, "warm-up")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(cfg.b1_rounds):
        order = all_contenders[i % len(all_contenders):] + all_contenders[: i % len(all_contenders)]
        for contender in order:
            rounds[contender.name].append(_one(bench, contender, root / contender.name / f"round-{i + 1}", runs_file, expected, f"round {i + 1}/{cfg.b1_rounds}"))
    return summarise(bench, all_contenders, rounds, runs)


def _walls(records: list[dict[str, Any]]) -> list[float]:
    return [r["wall"] for r in records]


def summarise(bench: Bench, all_contenders: list[Contender], rounds: dict[str, list[dict[str, Any]]], runs: list[workload.Run]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "available_dates": len(bench.b1_dates),
        "runs": len(runs),
        "notebooks_per_contender": 2 * len(runs),
        "rounds": bench.cfg.b1_rounds,
        "stencil": "[-1, 0]",
        "autoflow_settings": {"AUTOFLOW_MAX_PARALLEL_RUNS": bench.cfg.max_parallel_runs, "AUTOFLOW_MAX_PARALLEL_NOTEBOOKS": "default (CPU count)",
                             "AUTOFLOW_KERNEL_POOL": "unset (the default) except autoflow-api-nopool: 0"},
        "prefect_server": bench.prefect_description(),
        "contenders": {},
        "ratios": {},
    }
    for contender in all_contenders:
        records = rounds[contender.name]
        entry: dict[str, Any] = {
            "description": contender.description,
            "wall": summarize(_walls(records)),
            "all_outputs_match": all(r["outputs_match"] for r in records),
            "outputs": records[-1]["outputs"] if records else None,
            "peak_main_rss_mib": summarize([r["peak_main_rss_mib"] for r in records]),
            "peak_tree_rss_mib": summarize([r["peak_tree_rss_mib"] for r in records]),
            "first_kernel_after": summarize([r["first_kernel_after"] for r in records if r["first_kernel_after"] is not None]),
            "kernel_wait_per_notebook": summarize([r["kernel_wait_per_notebook"]["median"] for r in records if r.get("kernel_wait_per_notebook", {}).get("n")]),
            "rounds": [{k: v for k, v in r.items() if k != "per_run"} for r in records],
        }
        if contender.autoflow:
            lines = [r.get("timeline") or {} for r in records]
            for key in ("start_to_first_claim", "start_to_first_notebook", "first_claim_to_last_end", "last_end_to_exit", "notebook_seconds"):
                entry[key] = summarize([t[key] for t in lines if t.get(key) is not None])
            pooled: dict[str, list[float]] = {}
            for r in records:
                for key, values in (r.get("per_run") or {}).items():
                    pooled.setdefault(key, []).extend(values)
            entry["per_run"] = {key: summarize(values) | {"values": None} for key, values in pooled.items() if values}
        result["contenders"][contender.name] = entry
    walls = {name: _walls(records) for name, records in rounds.items()}
    windows = {
        name: [(r.get("timeline") or {}).get("first_claim_to_last_end") or 0.0 for r in records]
        for name, records in rounds.items()
    }
    for af in AUTOFLOW:
        for other in OTHERS:
            if walls.get(af) and walls.get(other):
                result["ratios"][f"{af} / {other}"] = ratio(walls[af], walls[other])
    for other in ("floor", "floor-2threads", "ploomber"):
        if windows.get("autoflow-api") and walls.get(other):
            result["ratios"][f"autoflow-api without start-up (d) / {other}"] = ratio(windows["autoflow-api"], walls[other])
    for other in ("floor-2threads", "ploomber"):
        if walls.get(other) and walls.get("floor"):
            result["ratios"][f"{other} / floor"] = ratio(walls[other], walls["floor"])
    if walls.get("autoflow-api") and walls.get("autoflow-api-nopool"):
        result["ratios"]["autoflow-api / autoflow-api-nopool (pool on / off)"] = ratio(walls["autoflow-api"], walls["autoflow-api-nopool"])
    peaks = {name: [r["peak_tree_rss_mib"] for r in records] for name, records in rounds.items()}
    result["peak_rss_ratios"] = {
        f"{af} / floor-2threads": ratio(peaks[af], peaks["floor-2threads"]) for af in AUTOFLOW if peaks.get(af) and peaks.get("floor-2threads")
    }
    result["b6"] = notebook_overhead_summary(bench, all_contenders, rounds)
    result["b8"] = cpu_summary(all_contenders, rounds, len(runs))
    glued = {name: (e["outputs"] or {}).get("glued_total_last_date") for name, e in result["contenders"].items()}
    result["same_outputs"] = {
        "executed_notebooks": {name: (e["outputs"] or {}).get("executed_notebooks") for name, e in result["contenders"].items()},
        "glued_total_last_date": glued,
        "all_match_expected": all(e["all_outputs_match"] for e in result["contenders"].values()),
    }
    return result


def notebook_overhead_summary(bench: Bench, all_contenders: list[Contender], rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """B6: per executed notebook, papermill's wall minus its cells' durations, pooled over the rounds."""
    out: dict[str, Any] = {
        "method": "per executed notebook: metadata.papermill.duration minus the sum of its cells' metadata.papermill.duration; "
        "the notebooks of each process's first runs (as many as it starts at once) left out",
        "contenders": {},
    }
    for contender in all_contenders:
        records = rounds[contender.name]
        steady = [v for r in records for v in r["notebook_overhead"]]
        cold = [v for r in records for v in r["notebook_overhead_first_runs"]]
        out["contenders"][contender.name] = {
            "pool": None if not contender.autoflow else ("off" if contender.name.endswith("-nopool") else "on (default)"),
            "first_runs_left_out": contender.parallel,
            "steady": summarize(steady) | {"values": None},
            "first_runs": summarize(cold) | {"values": None},
            "per_round_median": [summarize(r["notebook_overhead"]).get("median") for r in records],
        }
    steady_api = out["contenders"].get("autoflow-api", {}).get("steady", {})
    log(f"B6 per-notebook overhead, autoflow-api: median {steady_api.get('median')} s over {steady_api.get('n')} notebooks")
    return out


def cpu_summary(all_contenders: list[Contender], rounds: dict[str, list[dict[str, Any]]], runs: int) -> dict[str, Any]:
    """B8: CPU seconds per contender (process tree + the Prefect server it used), AutoFlow's beyond floor-2threads per run."""
    out: dict[str, Any] = {
        "method": "getrusage(RUSAGE_CHILDREN) of the harness before and after each contender (user + system of the process "
        "and every descendant it reaped); for PREFECT_API_URL contenders plus the harness's Prefect server's CPU meanwhile "
        "(psutil); per round, minus floor-2threads' of the same round, divided by the workflow runs",
        "runs": runs,
        "contenders": {},
        "beyond_floor_2threads_per_run": {},
    }
    totals: dict[str, list[float]] = {}
    for contender in all_contenders:
        records = rounds[contender.name]
        totals[contender.name] = [r["cpu_tree"] + (r["cpu_prefect_server"] or 0.0) for r in records]
        out["contenders"][contender.name] = {
            "total": summarize(totals[contender.name]),
            "process_tree": summarize([r["cpu_tree"] for r in records]),
            "process_tree_sampled": summarize([r["cpu_tree_sampled"] for r in records]),
            "prefect_server": summarize([r["cpu_prefect_server"] for r in records if r["cpu_prefect_server"] is not None]),
            "prefect_server_idle": summarize([r["cpu_prefect_server_idle"] for r in records if r["cpu_prefect_server_idle"] is not None]),
            "wall": summarize(_walls(records)),
            "orphans": sum(r["orphans"] for r in records),
            # rusage below the sampled lower bound means descendants escaped it (not reaped)
            "unreaped_cpu": round(max(0.0, max((r["cpu_tree_sampled"] - r["cpu_tree"] for r in records), default=0.0)), 3),
        }
    base = totals.get("floor-2threads")
    if base and runs:
        for af in AUTOFLOW:
            if totals.get(af):
                out["beyond_floor_2threads_per_run"][af] = summarize([(a - b) / runs for a, b in zip(totals[af], base)])
    got = out["beyond_floor_2threads_per_run"].get("autoflow-api", {})
    log(f"B8 orchestration CPU beyond floor-2threads, autoflow-api: median {got.get('median')} s per run")
    return out
