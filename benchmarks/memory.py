"""Memory: the service's RSS over idle ticks (see idle_ticks.py); B1 reports the peaks under load."""

from __future__ import annotations

import json
import shutil
from typing import Any

from benchmarks.common import PYTHON, REPO, log, run_process, summarize
from benchmarks.context import Bench

MIB = 2**20


def run(bench: Bench) -> dict[str, Any]:
    out = bench.work / "idle-ticks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result_file = out / "result.json"
    env = bench.autoflow_env(out, api=True)
    env["PYTHONPATH"] = str(REPO)
    command = [PYTHON, "-m", "benchmarks.idle_ticks", str(bench.cfg.idle_ticks), str(result_file)] + (["--tracemalloc"] if bench.cfg.tracemalloc else [])
    proc = run_process(command, env=env, cwd=REPO,
                       timeout=bench.cfg.process_timeout, log_file=bench.work / "idle-ticks.log")  # fmt: skip
    if not result_file.is_file():
        bench.error(f"idle ticks: exit {proc.returncode}, no result; log {bench.work / 'idle-ticks.log'}")
        return {"error": proc.stderr_tail[-1500:]}
    data = json.loads(result_file.read_text())
    if data["errors"] or not proc.ok:
        bench.error(f"idle ticks: {data['errors'][:3]} (exit {proc.returncode})")
    rss = [r / MIB for r in data["rss_after_tick"]]
    n = len(rss)
    settle = max(min(10, n // 2) - 1, 0)  # after the first ticks' lazy imports and caches (tick 10)
    fifty = min(50, n) - 1  # the "after 50 ticks"; the full run goes on to tick 150 to see whether RSS keeps rising

    def at_ticks(values: list[float], digits: int) -> dict[str, float]:
        """The values after the first, settling, 50th, middle and last tick, keyed by tick number."""
        return {str(i + 1): round(values[i], digits) for i in sorted({0, settle, fifty, n // 2, n - 1}) if i < n}

    result = {
        "method": "run_tick(sensor) driven in-process (as Service._loop does, without the cron wait); "
        "PREFECT_API_URL = the running server; every due run recorded as succeeded first",
        "ticks": data["ticks"],
        "tick_seconds": summarize(data["tick_seconds"]) | {"values": None},
        "rss_mib_before_first_tick": round(data["rss_before_first_tick"] / MIB, 1),
        "rss_mib_after_tick": at_ticks(rss, 1),
        "growth_mib_after_tick_50": round(rss[-1] - rss[fifty], 1) if n > 50 else None,
        "ticks_after_tick_50": max(n - 50, 0),
        "growth_mib_after_settling": round(rss[fifty] - rss[settle], 1) if n else None,
        "growth_kib_per_tick_after_settling": round((rss[fifty] - rss[settle]) * 1024 / max(fifty - settle, 1), 1) if n else None,
        "process_wall": round(proc.wall, 2),
        "rss_mib_every_tick": [round(r, 1) for r in rss],
    }
    if "traced_after_tick" in data:
        result["traced_mib_after_tick"] = at_ticks([t / MIB for t in data["traced_after_tick"]], 2)
        result["traced_growth_after_tick_50"] = data["traced_growth"]
    log(f"idle ticks: {n} ticks, RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB, median tick {result['tick_seconds'].get('median')} s")
    return result
