"""B5 scale-out: runs through a Prefect work pool with 1, 2 and 4 worker slots.

For each number of slots, on the harness's Prefect server and a fresh PostgreSQL database:

- ``autoflow worker`` processes (Prefect process workers; one for 1 slot, two for more, each
  ``--limit`` half the slots), started first and left polling;
- the service, one tick (schedule null, ``AUTOFLOW_WORK_POOL`` set, ``AUTOFLOW_MAX_PARALLEL_RUNS``
  = the slots): it claims and submits every due run, then waits until all have ended;
- the notebook writes the time of its first cell to a marker file, then sleeps (I/O-bound, so
  slots, not the 2 cores, limit throughput).

Measured: throughput (runs per minute, first claim to last recorded end), and for each run the
time from its claim to its first cell, split by the Prefect states' timestamps into: submission
(claim to flow run created), waiting for a worker (created to ``Pending``: polling, plus a free
slot), process start and imports (``Pending`` to ``Running``), and the flow's own start
(``Running`` to the first cell: taking the lease, loading workflows.yml, starting the kernel).
The latency is taken from the first runs submitted, one per slot: they met idle workers, while
the others queued behind them (their wait is queueing, not cost).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.b3_tick import ADMIN_CONNINFO
from benchmarks.common import PYTHON, REPO, base_env, kill_tree, log, run_process, summarize
from benchmarks.context import Bench

WORK = """\
import pathlib, time
(pathlib.Path(marker_dir) / f"{reference_date}.first").write_text(repr(time.time()))
time.sleep(float(pause))
"""
WORKFLOWS = """\
# AutoFlow benchmark B5 (written by benchmarks/b5_scaleout.py)
workflows:
  - name: wait
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, marker_dir: marker_dir, pause: pause}
available_dates_sensor:
  schedule: null
  source:
    type: directory
    pattern: 'data/{date:%Y-%m-%d}.csv'
  workflows:
    - workflow_name: wait
      parameters: {marker_dir: MARKERS, pause: PAUSE}
      date_stencil: [0]
"""
#: seconds between a worker's polls in this benchmark (autoflow worker's default is 5)
QUERY_SECONDS = "1"


def write_inputs(directory: Path, runs: int, pause: float, markers: Path) -> Path:
    import nbformat

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    for i in range(runs):
        (directory / "data" / f"{(dt.date(2020, 1, 1) + dt.timedelta(days=i)).isoformat()}.csv").write_text("calls\n1\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("reference_date = None\nmarker_dir = None\npause = 1.0")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(WORK)]
    nbformat.write(nb, directory / "work.ipynb")
    (directory / "workflows.yml").write_text(WORKFLOWS.replace("MARKERS", str(markers)).replace("PAUSE", repr(float(pause))))
    return directory


def _database(name: str, *, drop: bool = False) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _db_uri(name: str) -> str:
    parts = dict(item.split("=", 1) for item in ADMIN_CONNINFO.split())
    user = parts.get("user", "postgres")
    return f"postgresql://{user}@{parts.get('host', '127.0.0.1')}:{parts.get('port', '5432')}/{name}"


def _states(api_url: str, flow_run_id: str) -> dict[str, float]:
    """The first time the flow run entered each state type (epoch seconds), and its creation."""
    with urllib.request.urlopen(f"{api_url}/flow_runs/{flow_run_id}", timeout=10) as response:
        created = dt.datetime.fromisoformat(json.load(response)["created"]).timestamp()
    with urllib.request.urlopen(f"{api_url}/flow_run_states/?flow_run_id={flow_run_id}", timeout=10) as response:
        states = json.load(response)
    first: dict[str, float] = {"CREATED": created}
    waited_for_slot = False
    for state in sorted(states, key=lambda s: s["timestamp"]):
        first.setdefault(state["type"], dt.datetime.fromisoformat(state["timestamp"]).timestamp())
        waited_for_slot |= state["name"] == "AwaitingConcurrencySlot"
    first["waited_for_slot"] = float(waited_for_slot)
    return first


def one_setting(bench: Bench, slots: int, runs: int, pause: float) -> dict[str, Any]:
    assert bench.prefect is not None
    root = bench.work / "b5" / f"slots-{slots}"
    markers = root / "markers"
    markers.mkdir(parents=True)
    inputs = write_inputs(root / "inputs", runs, pause, markers)
    database = f"autoflow_b5_{secrets.token_hex(4)}"
    _database(database)
    pool = f"b5-{slots}-{secrets.token_hex(3)}"
    env = base_env(
        AUTOFLOW_INPUTS_DIR=str(inputs), AUTOFLOW_OUTPUTS_DIR=str(root / "outputs"), AUTOFLOW_DB_URI=_db_uri(database),
        AUTOFLOW_SECRETS_DIR=str(bench.work / "no-secrets"), AUTOFLOW_WORK_POOL=pool, AUTOFLOW_MAX_PARALLEL_RUNS=str(slots),
        PREFECT_API_URL=bench.prefect.api_url, PREFECT_HOME=str(bench.work / "prefect-client-home"),
        PREFECT_WORKER_QUERY_SECONDS=QUERY_SECONDS,
    )  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([PYTHON, "-m", "autoflow", "db", "upgrade"], env=env, cwd=REPO, check=True, capture_output=True, timeout=120)
        count = 1 if slots == 1 else 2
        for i in range(count):
            with open(root / f"worker-{i}.log", "wb") as out:
                workers.append(subprocess.Popen(
                    [PYTHON, "-m", "autoflow", "worker", "--name", f"{pool}-w{i}", "--limit", str(slots // count)],
                    env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                ))  # fmt: skip
        time.sleep(10)  # the workers start and poll before the runs arrive
        proc = run_process([PYTHON, "-m", "autoflow"], env=env, cwd=REPO, timeout=bench.cfg.process_timeout, log_file=root / "service.log", sample=False)
        if not proc.ok:
            bench.error(f"B5 {slots} slot(s): the service exited {proc.returncode}: {proc.stderr_tail[-800:]}")
        from autoflow.store import RunStore

        with RunStore(_db_uri(database).replace("postgresql://", "postgresql+psycopg://")) as store:
            history = store.history()
    finally:
        for worker in workers:
            kill_tree(worker.pid)
        _database(database, drop=True)
    succeeded = [a for a in history if a.state == "success"]
    if len(succeeded) != runs or len(history) != runs:
        bench.error(f"B5 {slots} slot(s): {len(succeeded)} of {runs} runs succeeded in {len(history)} attempts")
    first_claim = min(a.started_at for a in history).timestamp()
    last_end = max(a.finished_at for a in history if a.finished_at).timestamp()
    parts: dict[str, list[float]] = {"submission": [], "waiting for a worker": [], "process start and imports": [], "flow start to first cell": [], "claim to first cell": []}
    timed = []
    for attempt in succeeded:
        marker = markers / f"{attempt.reference_date.isoformat()}.first"
        if marker.exists() and attempt.flow_run_id:
            timed.append((attempt, float(marker.read_text()), _states(bench.prefect.api_url, attempt.flow_run_id)))
    # latency: the first runs submitted, one per slot, met idle workers; the others queued behind them
    for attempt, first_cell, states in sorted(timed, key=lambda t: t[2]["CREATED"])[:slots]:
        claim = attempt.started_at.timestamp()
        parts["submission"].append(states["CREATED"] - claim)
        parts["waiting for a worker"].append(states["PENDING"] - states["CREATED"])
        parts["process start and imports"].append(states["RUNNING"] - states["PENDING"])
        parts["flow start to first cell"].append(first_cell - states["RUNNING"])
        parts["claim to first cell"].append(first_cell - claim)
    slot_waits = sum(1 for _, _, states in timed if states.get("waited_for_slot"))
    span = last_end - first_claim
    result = {
        "slots": slots, "workers": 1 if slots == 1 else 2, "runs": runs, "succeeded": len(succeeded), "span_seconds": round(span, 2),
        "runs_per_minute": round(60 * runs / span, 3) if span > 0 else None,
        "latency": {name: summarize(values) for name, values in parts.items()}, "runs_that_waited_for_a_slot": slot_waits,
        "executors": sorted({(a.executor or "").split(" on ")[0] for a in history}),
    }  # fmt: skip
    log(f"B5 {slots} slot(s): {runs} runs in {span:.1f} s ({result['runs_per_minute']} runs/min); "
        f"median claim to first cell {result['latency']['claim to first cell'].get('median')} s")  # fmt: skip
    return result


def run(bench: Bench) -> dict[str, Any]:
    if bench.prefect is None:
        bench.start_servers()
    runs, pause, settings = bench.cfg.b5_runs, bench.cfg.b5_pause, bench.cfg.b5_slots
    results = [one_setting(bench, slots, runs, pause) for slots in settings]
    by_slots = {r["slots"]: r for r in results}
    speedups = {
        f"{s} / 1": round(by_slots[s]["runs_per_minute"] / by_slots[1]["runs_per_minute"], 3)
        for s in settings if s != 1 and 1 in by_slots and by_slots[s].get("runs_per_minute") and by_slots[1].get("runs_per_minute")
    }  # fmt: skip
    latencies = [v for r in results for v in r["latency"]["claim to first cell"].get("values", [])]
    return {
        "runs": runs, "pause_seconds": pause, "worker_query_seconds": float(QUERY_SECONDS), "settings": results,
        "throughput_speedup": speedups,
        "claim_to_first_cell_median": round(statistics.median(latencies), 3) if latencies else None,
    }  # fmt: skip
