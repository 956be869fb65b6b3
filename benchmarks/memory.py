"""Memory: the service's RSS over idle ticks (see idle_ticks.py); B1 reports the peaks under load.

With ``--memory-before REF`` the idle ticks also run on AutoFlow as it was at commit REF (a
temporary ``git worktree`` of it, removed afterwards), the two alternating over
:data:`ROUNDS_WITH_BEFORE` rounds in the same session, so a fix is shown beside what it fixed.
Both run the same driver (this checkout's ``idle_ticks.py``) on the same interpreter; only the
``autoflow`` package differs (``PYTHONPATH``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, REPO, log, run_process, summarize
from benchmarks.context import Bench

MIB = 2**20
#: rounds per contender when comparing with an earlier commit (they alternate: A B, B A, ...)
ROUNDS_WITH_BEFORE = 2
#: the target's span: from tick 100 (caches filled) to tick 1,000
GROWTH_FROM, GROWTH_TO = 100, 1000
CURRENT = "this checkout"
METHOD = (
    "run_tick(sensor) driven in-process (as Service._loop does, without the cron wait); "
    "PREFECT_API_URL = the running server; every due run recorded as succeeded first"
)


def run(bench: Bench) -> dict[str, Any]:
    out = bench.work / "idle-ticks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    contenders = {CURRENT: REPO}
    before: dict[str, Any] | None = None
    checkout: Path | None = None
    if bench.cfg.memory_before:
        commit = _git("rev-parse", "--verify", f"{bench.cfg.memory_before}^{{commit}}")
        checkout = bench.work / "before-checkout"
        _git("worktree", "prune")  # one a killed session left behind (the working directory is new)
        _git("worktree", "add", "--detach", str(checkout), commit)
        before = {"ref": bench.cfg.memory_before, "commit": commit[:12], "subject": _git("log", "-1", "--format=%s", commit)}
        contenders[f"before ({bench.cfg.memory_before} {commit[:7]})"] = checkout
    rounds = ROUNDS_WITH_BEFORE if checkout is not None else 1
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    try:
        for i in range(rounds):
            order = list(contenders.items())
            for name, source in order if i % 2 == 0 else order[::-1]:
                label = "current" if name == CURRENT else "before"
                measured[name].append(_idle_ticks(bench, source, out / f"{label}-{i + 1}", name))
    finally:
        if checkout is not None:
            _git("worktree", "remove", "--force", str(checkout))
    current = measured.pop(CURRENT)
    result = dict(current[0])  # the first round's figures, as a single run reports them
    result["rounds"] = [_round_summary(r) for r in current]
    result["growth_mib_tick_100_to_1000"] = _worst(current)
    if before is not None:
        (rounds_before,) = measured.values()
        before["rounds"] = [_round_summary(r) for r in rounds_before]
        before["growth_mib_tick_100_to_1000"] = _worst(rounds_before)
        before["rss_mib_every_tick"] = [r.get("rss_mib_every_tick") for r in rounds_before]
        result["before"] = before
    return result


def _idle_ticks(bench: Bench, source: Path, out: Path, name: str) -> dict[str, Any]:
    """One process of ``bench.cfg.idle_ticks`` idle ticks on the ``autoflow`` package in ``source``."""
    out.mkdir(parents=True)
    result_file = out / "result.json"
    env = bench.autoflow_env(out, api=True)
    env["PYTHONPATH"] = str(source)  # its autoflow, ahead of the venv's editable install
    # the driver by path: this checkout's, whichever autoflow it drives
    command = [PYTHON, str(REPO / "benchmarks" / "idle_ticks.py"), str(bench.cfg.idle_ticks), str(result_file)]
    command += ["--tracemalloc"] if bench.cfg.tracemalloc else []
    command += ["--gc-garbage"] if bench.cfg.gc_garbage else []
    log_file = out.parent / f"{out.name}.log"
    proc = run_process(command, env=env, cwd=source, timeout=bench.cfg.process_timeout, log_file=log_file)
    if not result_file.is_file():
        bench.error(f"idle ticks ({name}): exit {proc.returncode}, no result; log {log_file}")
        return {"error": proc.stderr_tail[-1500:]}
    data = json.loads(result_file.read_text())
    if data["errors"] or not proc.ok:
        bench.error(f"idle ticks ({name}): {data['errors'][:3]} (exit {proc.returncode})")
    rss = [r / MIB for r in data["rss_after_tick"]]
    n = len(rss)
    settle = max(min(10, n // 2) - 1, 0)  # after the first ticks' lazy imports and caches (tick 10)
    fifty = min(50, n) - 1  # the "after 50 ticks"; the full run goes on to see whether RSS keeps rising
    collected = data["gc_collected_after_tick"]

    def at_ticks(values: list[float], digits: int) -> dict[str, float]:
        """The values after the first, settling, 50th, 100th, middle and last tick, keyed by tick number."""
        wanted = {0, settle, fifty, GROWTH_FROM - 1, n // 2, GROWTH_TO - 1, n - 1}
        return {str(i + 1): round(values[i], digits) for i in sorted(wanted) if 0 <= i < n}

    result = {
        "contender": name,
        "autoflow": data["autoflow"],
        "method": METHOD,
        "ticks": data["ticks"],
        "tick_seconds": summarize(data["tick_seconds"]) | {"values": None},
        "rss_mib_before_first_tick": round(data["rss_before_first_tick"] / MIB, 1),
        "rss_mib_after_tick": at_ticks(rss, 1),
        "growth_mib_after_tick_50": round(rss[-1] - rss[fifty], 1) if n > 50 else None,
        "ticks_after_tick_50": max(n - 50, 0),
        "growth_mib_after_settling": round(rss[fifty] - rss[settle], 1) if n else None,
        "growth_kib_per_tick_after_settling": round((rss[fifty] - rss[settle]) * 1024 / max(fifty - settle, 1), 1) if n else None,
        "growth_mib_tick_100_to_1000": round(rss[GROWTH_TO - 1] - rss[GROWTH_FROM - 1], 1) if n >= GROWTH_TO else None,
        # objects in reference cycles a tick leaves, which only the cyclic collector frees
        "gc_collected_per_tick_after_tick_100": round((collected[-1] - collected[GROWTH_FROM - 1]) / (n - GROWTH_FROM), 1) if n > GROWTH_FROM else None,
        "threads_after_last_tick": data["threads_after_tick"][-1] if n else None,
        "rss_mib_after_malloc_trim": None if data.get("rss_after_malloc_trim") is None else round(data["rss_after_malloc_trim"] / MIB, 1),
        "process_wall": round(proc.wall, 2),
        "rss_mib_every_tick": [round(r, 1) for r in rss],
    }  # fmt: skip
    if "gc_garbage" in data:
        result["gc_garbage"] = data["gc_garbage"]
    if "traced_after_tick" in data:
        result["traced_mib_after_tick"] = at_ticks([t / MIB for t in data["traced_after_tick"]], 2)
        result["traced_growth_after_tick_50"] = data["traced_growth"]
    log(f"idle ticks, {name}: {n} ticks, RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB, median tick {result['tick_seconds'].get('median')} s")
    return result


def _round_summary(measured: dict[str, Any]) -> dict[str, Any]:
    keys = ("rss_mib_after_tick", "growth_mib_tick_100_to_1000", "growth_mib_after_tick_50", "gc_collected_per_tick_after_tick_100",
            "threads_after_last_tick", "rss_mib_after_malloc_trim", "tick_seconds", "error")  # fmt: skip
    return {k: measured[k] for k in keys if k in measured}


def _worst(rounds: list[dict[str, Any]]) -> float | None:
    """The largest growth from tick 100 to 1,000 over the rounds (None unless every round got there)."""
    values = [r.get("growth_mib_tick_100_to_1000") for r in rounds]
    return None if not values or None in values else max(values)  # type: ignore[type-var]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
