"""Run AutoFlow's benchmarks and write benchmarks/results/latest.{md,json}.

    .venv/bin/python -m benchmarks            # full (make bench)
    .venv/bin/python -m benchmarks --quick    # small sizes, to check the harness (make bench-quick)
    .venv/bin/python -m benchmarks --only b3,b4 --rounds 3 --wait-for-load 1.0
    .venv/bin/python -m benchmarks --only b1,b7   # B1 with B6 and B8 from its runs, and B7

Exit status 0 when every benchmark ran and every contender produced the expected outputs,
whatever the timings; 1 otherwise (the errors are listed in the results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import environments, report
from benchmarks.common import REPO, RESULTS, WORK, LoadMonitor, log, machine, version_of
from benchmarks.context import FULL, QUICK, Bench

BENCHMARKS = ("b1", "b2", "b3", "b4", "b5", "b7", "b9", "memory")
#: names that are part of another benchmark's runs: B6 (per-notebook overhead) and B8
#: (orchestration CPU) are computed from B1's
PART_OF = {"b6": "b1", "b8": "b1"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and single repeats (a few minutes)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)} (b6 and b8 come with b1)")
    parser.add_argument("--rounds", type=int, help="B1 rounds (default: 5 full, 1 quick)")
    parser.add_argument("--b1-dates", type=int, help="B1 available dates (default: 24 full, 4 quick)")
    parser.add_argument("--b1-contenders", metavar="NAMES", help="B1: only these comma-separated contenders (default: all; see benchmarks/README.md)")
    parser.add_argument("--b7-repeats", type=int, help="B7 repeats of each autoflow trigger setting (default: 5 full, 1 quick)")
    parser.add_argument("--idle-ticks", type=int, help="idle ticks in the memory benchmark (default: 150 full, 10 quick)")
    parser.add_argument("--tracemalloc", action="store_true", help="memory: also trace Python allocations and report where they grew after tick 50 (slower)")
    parser.add_argument("--gc-garbage", action="store_true", help="memory: keep the reference-cycle garbage of idle ticks 101-120 and count it by type (inflates RSS after tick 100)")
    parser.add_argument("--memory-before", metavar="REF", help="memory: also run the idle ticks on AutoFlow at git commit REF (e.g. main), alternating with this checkout")
    parser.add_argument("--ploomber", choices=("build", "if-built", "no"), help="Ploomber contender: build its venv if missing, use it only if built, or skip")
    parser.add_argument("--ploomber-serial", action="store_true", help="also run Ploomber with its default Serial executor in B1")
    parser.add_argument("--profile", choices=("build", "if-built", "no"), help="py-spy profiles in B2: build the tools venv if missing, only if built, or skip")
    parser.add_argument("--wait-for-load", type=float, metavar="LOAD", help="first wait until the 1-minute load average is below LOAD")
    parser.add_argument("--max-wait", type=float, default=2400, metavar="SECONDS", help="give up waiting for a quiet machine after this long (default 2400)")
    parser.add_argument("--output", default=str(RESULTS), help="results directory (default benchmarks/results)")
    parser.add_argument("--render", metavar="JSON", help="only re-write the .md next to this results .json (after a change to report.py)")
    parser.add_argument("--add-to", metavar="JSON", help="also put the benchmarks run into this results .json (and its .md), marked as measured in a separate run")
    return parser.parse_args(argv)


def _wait_for_load(limit: float | None, max_wait: float) -> float:
    if limit is None:
        return 0.0
    started = time.monotonic()
    while os.getloadavg()[0] >= limit:
        waited = time.monotonic() - started
        if waited > max_wait:
            log(f"load still {os.getloadavg()[0]:.2f} after {waited:.0f} s; running anyway")
            break
        log(f"waiting for the 1-minute load to drop below {limit} (now {os.getloadavg()[0]:.2f}, waited {waited:.0f} s)")
        time.sleep(30)
    return time.monotonic() - started


def _commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "autoflow"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{head}{' with uncommitted changes in autoflow/' if dirty else ''}" if head else None


def _write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{name}.tmp"
    tmp.write_text(text)
    tmp.replace(directory / name)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render:
        source = Path(args.render)
        data = json.loads(source.read_text())
        data["targets"] = report.targets(data)
        _write(source.parent, source.name, json.dumps(data, indent=2, default=str) + "\n")
        _write(source.parent, source.with_suffix(".md").name, report.markdown(data))
        return 0
    warnings.filterwarnings("ignore", message="Communications with this server are NOT SECURE")
    cfg = QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("b1_rounds", args.rounds), ("b1_dates", args.b1_dates), ("ploomber", args.ploomber), ("profile", args.profile), ("idle_ticks", args.idle_ticks), ("b7_repeats", args.b7_repeats), ("memory_before", args.memory_before)) if v is not None}
    if args.ploomber_serial:
        overrides["ploomber_serial"] = True
    if args.b1_contenders:
        overrides["b1_contenders"] = tuple(n.strip() for n in args.b1_contenders.split(",") if n.strip())
    if args.tracemalloc:
        overrides["tracemalloc"] = True
    if args.gc_garbage:
        overrides["gc_garbage"] = True
    cfg = replace(cfg, **overrides)
    asked = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(asked) - set(BENCHMARKS) - set(PART_OF)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)} (b6 and b8 come with b1)", file=sys.stderr)
        return 2
    selected = [b for b in BENCHMARKS if b in asked or b in {PART_OF.get(a) for a in asked}]
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    waited = _wait_for_load(args.wait_for_load, args.max_wait)
    started_wall, started = dt.datetime.now(dt.timezone.utc), time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    log(f"{cfg.mode} run of {', '.join(selected)}; load {load_at_start}")

    work = WORK / cfg.mode
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    bench = Bench(cfg, work, results_dir=Path(args.output))
    wants_ploomber = cfg.b1_contenders is None or any(n.startswith("ploomber") for n in cfg.b1_contenders)
    if "b1" in selected and cfg.ploomber != "no" and wants_ploomber:
        try:
            bench.ploomber_python = environments.ploomber_python(build=cfg.ploomber == "build")
        except Exception as exc:  # noqa: BLE001 - the other contenders still run
            bench.error(f"Ploomber's venv: {exc}")
        if bench.ploomber_python is None and cfg.ploomber == "if-built":
            bench.notes.append("Ploomber contender skipped: its venv is not built (`python -m benchmarks --ploomber build`, or `make bench`)")
    if "b2" in selected and cfg.profile != "no":
        try:
            bench.py_spy = environments.py_spy(build=cfg.profile == "build")
        except Exception as exc:  # noqa: BLE001
            bench.error(f"py-spy's venv: {exc}")
    results: dict[str, Any] = {"config": cfg.as_json()}
    modules = {"b1": "b1_backlog", "b2": "b2_overhead", "b3": "b3_tick", "b4": "b4_startup", "b5": "b5_scaleout", "b7": "b7_trigger", "b9": "b9_site", "memory": "memory"}
    with LoadMonitor() as load:
        try:
            if {"b1", "b2", "b7", "memory"} & set(selected):
                bench.start_servers()
            for name in BENCHMARKS:
                if name not in selected:
                    continue
                log(f"--- {name} ---")
                began = time.monotonic()
                try:
                    module = __import__(f"benchmarks.{modules[name]}", fromlist=["run"])
                    results[name] = module.run(bench)
                except Exception as exc:  # noqa: BLE001 - record it and go on with the next benchmark
                    bench.error(f"{name} crashed: {type(exc).__name__}: {exc}")
                    results[name] = {"error": traceback.format_exc()[-3000:]}
                results.setdefault("durations", {})[name] = round(time.monotonic() - began, 1)
        finally:
            bench.close()
    results["machine"] = machine()
    results["versions"] = {
        "autoflow": version_of("autoflow"),
        "prefect": version_of("prefect"),
        "papermill": version_of("papermill"),
        "sqlalchemy": version_of("sqlalchemy"),
        "ploomber": version_of("ploomber", str(bench.ploomber_python)) if bench.ploomber_python else None,
        "py-spy": subprocess.run([str(bench.py_spy), "--version"], capture_output=True, text=True).stdout.strip() if bench.py_spy else None,
        "postgresql": _postgres_version(),
    }
    results["meta"] = {
        "mode": cfg.mode,
        "command": command.strip(),
        "benchmarks": selected,
        "started_at": started_wall.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_seconds": round(time.monotonic() - started, 1),
        "commit": _commit(),
        "load_at_start": load_at_start,
        "load_during": load.summary(),
        "waited_seconds": round(waited, 1),
    }
    results["errors"] = bench.errors
    results["notes"] = bench.notes
    results["targets"] = report.targets(results)
    out_dir = bench.results_dir
    text = json.dumps(results, indent=2, default=str)
    markdown = report.markdown(results)
    # a subset never replaces the complete results: it goes to only-<names>.{md,json}
    stems = ("latest", cfg.mode) if set(selected) == set(BENCHMARKS) else (f"only-{'-'.join(selected)}",)
    for stem in stems:
        _write(out_dir, f"{stem}.json", text + "\n")
        _write(out_dir, f"{stem}.md", markdown)
    log(f"wrote {out_dir / (stems[0] + '.md')} and {stems[0]}.json ({results['meta']['duration_seconds'] / 60:.1f} min)")
    if args.add_to:
        _add_to(Path(args.add_to), results, selected)
    for t in results["targets"]:
        log(f"target {t['name']}: {t['measured']} {t['unit']} ({t['target']}) -> {'met' if t['met'] else 'not met' if t['met'] is False else 'not measured'}")
    return 1 if bench.errors else 0


def _add_to(target: Path, results: dict[str, Any], selected: list[str]) -> None:
    """Put ``selected`` from ``results`` into the results file ``target``, each with the run it came from."""
    data = json.loads(target.read_text())
    if data["meta"]["mode"] != results["meta"]["mode"]:
        raise SystemExit(f"{target} is a {data['meta']['mode']} run; this was a {results['meta']['mode']} run")
    for name in selected:
        data[name] = {**results[name], "measured_separately": {k: results["meta"][k] for k in ("command", "started_at", "finished_at", "commit", "load_at_start", "load_during")}}
        data.setdefault("durations", {})[name] = results["durations"].get(name)
    data["errors"] = [*data.get("errors", []), *results["errors"]]
    data["targets"] = report.targets(data)
    _write(target.parent, target.name, json.dumps(data, indent=2, default=str) + "\n")
    _write(target.parent, target.with_suffix(".md").name, report.markdown(data))
    log(f"added {', '.join(selected)} to {target} and its .md")


def _postgres_version() -> str | None:
    try:
        import psycopg

        from benchmarks.b3_tick import ADMIN_CONNINFO

        with psycopg.connect(ADMIN_CONNINFO, connect_timeout=5) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:  # noqa: BLE001 - only for the report
        return None


if __name__ == "__main__":
    sys.exit(main())
