"""B1 backlog: every contender executes the same two notebooks for every due date, from nothing.

Contenders, alternating round by round (the order rotates each round):

- ``floor``: a plain loop calling ``papermill.execute_notebook``, one notebook after another;
- ``ploomber``: Ploomber 0.23 in its own venv, a DAG of NotebookRunner tasks built with its
  Parallel executor (2 processes), and ``ploomber-serial`` (its default Serial executor) in full mode;
- ``autoflow-api``: ``python -m autoflow`` one-shot with PREFECT_API_URL pointing at a Prefect
  server the harness started before the benchmark (already running, warm);
- ``autoflow-temp``: the same without PREFECT_API_URL, so AutoFlow starts its temporary server.

Each is a whole process, timed from fork to exit, with its process tree's RSS sampled. The
outputs are checked: the number of executed notebooks, and every date's glued totals against
the values computed here. For AutoFlow, the run history and the notebooks' stamped timings
also give the time from first claim to last recorded end (no start-up), the start-up itself,
and the per-run overhead beyond papermill.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmarks import history, workload
from benchmarks.common import PYTHON, ProcessRun, base_env, log, ratio, run_process, summarize
from benchmarks.context import Bench

CONTENDERS_DIR = Path(__file__).resolve().parent / "contenders"


@dataclass
class Contender:
    name: str
    description: str
    command: Callable[[Path, Path], list[str]]  # (outputs dir, runs file) -> argv
    env: Callable[[Path, bool], dict[str, str]]  # (outputs dir, warm-up?) -> environment
    autoflow: bool = False


def contenders(bench: Bench) -> list[Contender]:
    inputs = bench.b1_inputs
    found: list[Contender] = [
        Contender(
            "floor", "plain loop over papermill.execute_notebook, sequential (AutoFlow's venv)",
            lambda out, runs: [PYTHON, str(CONTENDERS_DIR / "floor.py"), str(inputs), str(out), str(runs)],
            lambda out, warm: base_env(),
        ),
    ]  # fmt: skip
    if bench.ploomber_python is not None:
        ploomber = str(bench.ploomber_python)
        found.append(Contender(
            "ploomber", "Ploomber 0.23.3 DAG of NotebookRunner tasks, Parallel executor (2 processes)",
            lambda out, runs: [ploomber, str(CONTENDERS_DIR / "ploomber_dag.py"), str(inputs), str(out), str(runs), "2"],
            lambda out, warm: base_env(),
        ))  # fmt: skip
        if bench.cfg.ploomber_serial:
            found.append(Contender(
                "ploomber-serial", "Ploomber 0.23.3 DAG of NotebookRunner tasks, default Serial executor",
                lambda out, runs: [ploomber, str(CONTENDERS_DIR / "ploomber_dag.py"), str(inputs), str(out), str(runs), "1"],
                lambda out, warm: base_env(),
            ))  # fmt: skip
    found.append(Contender(
        "autoflow-api", "python -m autoflow one-shot, PREFECT_API_URL = a Prefect server already running",
        lambda out, runs: [PYTHON, "-m", "autoflow"], lambda out, warm: bench.autoflow_env(out, api=True, warmup=warm), autoflow=True,
    ))  # fmt: skip
    found.append(Contender(
        "autoflow-temp", "python -m autoflow one-shot, no PREFECT_API_URL (AutoFlow starts a temporary server)",
        lambda out, runs: [PYTHON, "-m", "autoflow"], lambda out, warm: bench.autoflow_env(out, api=False, warmup=warm), autoflow=True,
    ))  # fmt: skip
    return found


def _one(bench: Bench, contender: Contender, out: Path, runs_file: Path, expected: dict[str, tuple[int, int]], label: str) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    proc: ProcessRun = run_process(
        contender.command(out, runs_file), env=contender.env(out, label == "warm-up"), cwd=out, timeout=bench.cfg.process_timeout,
        log_file=out.parent / f"{out.name}.log",
    )  # fmt: skip
    produced = workload.inspect_outputs(out)
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
    }
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
        "autoflow_settings": {"AUTOFLOW_MAX_PARALLEL_RUNS": bench.cfg.max_parallel_runs, "AUTOFLOW_MAX_PARALLEL_NOTEBOOKS": "default (CPU count)"},
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
    for af in ("autoflow-api", "autoflow-temp"):
        for other in ("floor", "ploomber", "ploomber-serial"):
            if walls.get(af) and walls.get(other):
                result["ratios"][f"{af} / {other}"] = ratio(walls[af], walls[other])
    for other in ("floor", "ploomber"):
        if windows.get("autoflow-api") and walls.get(other):
            result["ratios"][f"autoflow-api without start-up (d) / {other}"] = ratio(windows["autoflow-api"], walls[other])
    if walls.get("ploomber") and walls.get("floor"):
        result["ratios"]["ploomber / floor"] = ratio(walls["ploomber"], walls["floor"])
    glued = {name: (e["outputs"] or {}).get("glued_total_last_date") for name, e in result["contenders"].items()}
    result["same_outputs"] = {
        "executed_notebooks": {name: (e["outputs"] or {}).get("executed_notebooks") for name, e in result["contenders"].items()},
        "glued_total_last_date": glued,
        "all_match_expected": all(e["all_outputs_match"] for e in result["contenders"].values()),
    }
    return result
