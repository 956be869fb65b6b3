"""B7 one-off latency: ``autoflow trigger`` of the two-notebook workflow as a whole process.

``python -m autoflow trigger backlog --date D`` on the B1 workload (the fake FlowAPI serves its
dates), timed from fork to exit, minus the time its notebooks' cells ran (the sum of the cells'
``metadata.papermill.duration`` of that run's two notebooks): what a user waits for beyond their
own code. Settings, alternating in each repeat (the order rotates):

- ``autoflow-api``: PREFECT_API_URL = the harness's running Prefect server (as in B1);
- ``autoflow-api-nopool``: the same with ``AUTOFLOW_KERNEL_POOL=0``;
- ``autoflow-temp``: no PREFECT_API_URL, so the process starts its temporary server.

One outputs directory (run history) per setting, as a deployment has; the first repeat of each
creates it and is dropped. Logs: ``b7/<setting>-<repeat>.log``, each line prefixed with the
seconds since the fork at which the harness received it. The latency is broken down with the harness's clock (the moment
the process's first output line arrives), the run history (the claim: ``started_at``) and
papermill's cell timestamps: start → first log line → run claimed → first cell starts, and last
cell ends → exit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from itertools import cycle
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import PYTHON, kill_tree, log, summarize
from benchmarks.context import Bench

SETTINGS = ("autoflow-api", "autoflow-api-nopool", "autoflow-temp")
PARTS = ("start_to_first_log_line", "first_log_line_to_claim", "claim_to_first_cell", "cells", "between_cells", "last_cell_to_exit")


def _env(bench: Bench, setting: str, out: Path) -> dict[str, str]:
    # unbuffered, so each line reaches the harness when it is written
    env = bench.autoflow_env(out, api=setting != "autoflow-temp", PYTHONUNBUFFERED="1")
    if setting.endswith("-nopool"):
        env["AUTOFLOW_KERNEL_POOL"] = "0"
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float, log_file: Path) -> dict[str, Any]:
    """Run ``command``; its wall time, exit status, and the epoch seconds its launch, first output line and exit."""
    first_line: list[float] = []
    with open(log_file, "w") as out:
        launched_at = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                now = time.time()
                if not first_line and line.strip():
                    first_line.append(now)
                out.write(f"[+{now - launched_at:7.3f}] {line}")

        reader = threading.Thread(target=read, name="bench-b7-lines", daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            returncode = proc.wait()
        wall = time.perf_counter() - started
        reader.join(timeout=10)
    return {"wall": wall, "returncode": returncode, "launched_at": launched_at, "exited_at": launched_at + wall,
            "first_line_at": first_line[0] if first_line else None}  # fmt: skip


def _epoch(text: str) -> float:
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


def _cells(paths: list[Path]) -> tuple[float, float, float] | None:
    """(sum of the cells' durations, first cell's start, last cell's end) over these notebooks."""
    total, starts, ends = 0.0, [], []
    for path in paths:
        try:
            nb = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("papermill") or {}
            if meta.get("start_time") and meta.get("end_time"):
                total += float(meta.get("duration") or 0.0)
                starts.append(_epoch(meta["start_time"]))
                ends.append(_epoch(meta["end_time"]))
    return (total, min(starts), max(ends)) if starts else None


def one(bench: Bench, setting: str, out: Path, date: str, repeat: int) -> dict[str, Any] | None:
    """One ``autoflow trigger`` process; its latency beyond the cells and where it went (None if it failed)."""
    from autoflow.store import RunStore

    label = "warm-up" if repeat == 0 else f"repeat {repeat}/{bench.cfg.b7_repeats}"
    log_file = out.parent / f"{out.name}-{repeat}.log"
    command = [PYTHON, "-m", "autoflow", "trigger", "backlog", "--date", date]
    proc = _run(command, _env(bench, setting, out), out, bench.cfg.process_timeout, log_file)
    with RunStore(bench.sqlite_url(out)) as store:
        attempts = store.history(limit=1)
    attempt = attempts[0] if attempts else None
    if proc["returncode"] != 0 or attempt is None or attempt.state != "success":
        bench.error(f"B7 {setting} ({label}): exit {proc['returncode']}, attempt {attempt.state if attempt else None}; log {log_file}")
        return None
    paths = [Path(p) if Path(p).is_absolute() else out / p for p in attempt.notebooks]
    cells = _cells(paths)
    if cells is None or len(paths) != 2:
        bench.error(f"B7 {setting} ({label}): expected 2 executed notebooks with papermill's cell timings, found {attempt.notebooks}")
        return None
    cell_seconds, first_cell, last_cell = cells
    claimed = attempt.started_at.replace(tzinfo=attempt.started_at.tzinfo or dt.timezone.utc).timestamp()
    first_line = proc["first_line_at"] or claimed
    record = {
        "date": date,
        "wall": proc["wall"],
        "latency": proc["wall"] - cell_seconds,
        "start_to_first_log_line": first_line - proc["launched_at"],
        "first_log_line_to_claim": claimed - first_line,
        "claim_to_first_cell": first_cell - claimed,
        "cells": cell_seconds,
        # first cell start to last cell end, minus the cells: the gap between the two notebooks (kernel, papermill)
        "between_cells": (last_cell - first_cell) - cell_seconds,
        "last_cell_to_exit": proc["exited_at"] - last_cell,
        "first_log_line_seen": proc["first_line_at"] is not None,
    }
    log(f"B7 {label} {setting}: {proc['wall']:.2f} s, {record['latency']:.2f} s beyond the cells")
    return record


def run(bench: Bench) -> dict[str, Any]:
    root = bench.work / "b7"
    if root.exists():
        shutil.rmtree(root)
    outs = {setting: root / setting for setting in SETTINGS}
    for out in outs.values():
        out.mkdir(parents=True)
    dates = cycle(r.reference_date for r in workload.due_runs(bench.b1_dates))
    repeats = bench.cfg.b7_repeats
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    # repeat 0 creates each setting's run history and warms the page cache: dropped
    for i in range(repeats + 1):
        order = SETTINGS[i % len(SETTINGS):] + SETTINGS[: i % len(SETTINGS)]
        date = next(dates)
        for setting in order:
            got = one(bench, setting, outs[setting], date, i)
            if got is not None and i > 0:
                records[setting].append(got)
    result: dict[str, Any] = {
        "method": "python -m autoflow trigger backlog --date D (the B1 workload, its fake FlowAPI), fork to exit, minus the sum of "
        "the cells' papermill durations of the run's 2 notebooks; one run history per setting, first repeat dropped",
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "settings": {},
    }
    for setting, recs in records.items():
        result["settings"][setting] = {
            "latency": summarize([r["latency"] for r in recs]),
            "wall": summarize([r["wall"] for r in recs]),
            "parts": {part: summarize([r[part] for r in recs]) | {"values": None} for part in PARTS},
            "repeats": recs,
        }
    got = result["settings"]["autoflow-api"]["latency"]
    log(f"B7 trigger latency beyond the cells, autoflow-api: median {got.get('median')} s")
    return result
