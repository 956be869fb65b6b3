"""The targets, and latest.md written from latest.json's data."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import spread_text

#: AutoFlow's B1 contenders: kernel pool on (the default), off, and with its temporary Prefect server
AUTOFLOW = ("autoflow-api", "autoflow-api-nopool", "autoflow-temp")


def _get(data: Any, *keys: Any) -> Any:
    for key in keys:
        if data is None:
            return None
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with what was measured; ``met`` is None when it was not measured."""
    found: list[dict[str, Any]] = []

    def add(name: str, target: str, value: float | None, limit: float, unit: str = "", note: str = "") -> None:
        found.append({
            "name": name, "target": target, "measured": None if value is None else round(value, 3),
            "unit": unit, "met": None if value is None else value <= limit, "note": note,
        })  # fmt: skip

    b1 = results.get("b1") or {}
    for af in AUTOFLOW:
        if af not in (b1.get("contenders") or {}) and af == "autoflow-api-nopool" and b1:
            continue  # results from before the pool-off contender
        add(f"B1 {af} / floor-2threads", "≤ 0.95×", _get(b1, "ratios", f"{af} / floor-2threads", "of_medians"), 0.95, "×")
        add(f"B1 {af} / floor (sequential)", "≤ 0.52×", _get(b1, "ratios", f"{af} / floor", "of_medians"), 0.52, "×")
        add(f"B1 {af} / ploomber", "≤ 0.6×", _get(b1, "ratios", f"{af} / ploomber", "of_medians"), 0.6, "×")
        add(f"B1 peak RSS of the process tree, {af} / floor-2threads", "≤ 2.0×",
            _get(b1, "peak_rss_ratios", f"{af} / floor-2threads", "of_medians"), 2.0, "×")  # fmt: skip
    b2 = results.get("b2") or {}
    add("B2 overhead per run, claim to next claim (steady state)", "≤ 0.200 s", _get(b2, "per_run", "cycle_overhead", "median"), 0.2, "s")
    add("B2 overhead per run, claim to recorded end", "≤ 0.200 s", _get(b2, "per_run", "overhead", "median"), 0.2, "s")
    b3 = results.get("b3") or {}
    sizes = b3.get("sizes") or []
    if sizes:
        big = sizes[-1]
        for kind in ("sqlite", "postgresql"):
            add(f"B3 tick reads + plan, {big['dates']} dates, {big['attempts']} attempts, {kind}", "≤ 1.0 s",
                _get(big, "databases", kind, "tick_reads_and_plan", "median"), 1.0, "s")  # fmt: skip
        counts = b3.get("statement_counts") or {}
        found.append({
            "name": "B3 SQL statements per tick independent of the number of dates", "target": "same count at every size",
            "measured": ", ".join(f"{k}: {v}" for k, v in counts.items()), "unit": "", "met": b3.get("statements_independent_of_dates"), "note": "",
        })  # fmt: skip
    b4 = results.get("b4") or {}
    add("B4 autoflow validate", "≤ 1.0 s", _get(b4, "wall", "autoflow validate", "median"), 1.0, "s")
    b5 = results.get("b5") or {}
    speedups = b5.get("throughput_speedup") or {}
    best = max((int(k.split()[0]) for k in speedups), default=None)
    if best is not None:
        value = speedups[f"{best} / 1"]
        want = 3.3 if best == 4 else 0.825 * best  # 3.3 of an ideal 4: the same share for fewer slots (quick mode)
        found.append({
            "name": f"B5 throughput, {best} worker slots / 1 slot", "target": f"≥ {want:g}×", "measured": value, "unit": "×",
            "met": value >= want, "note": "",
        })  # fmt: skip
    else:
        found.append({"name": "B5 throughput, 4 worker slots / 1 slot", "target": "≥ 3.3×", "measured": None, "unit": "×", "met": None, "note": ""})
    add("B5 claim to first notebook cell (median, runs that met an idle worker)", "≤ 4.0 s", b5.get("claim_to_first_cell_median"), 4.0, "s")
    for af, pool in (("autoflow-api", "pool on"), ("autoflow-api-nopool", "pool off")):
        add(f"B6 per-notebook overhead beyond its cells, {pool} ({af}, steady state, median)", "≤ 0.150 s",
            _get(b1, "b6", "contenders", af, "steady", "median"), 0.15, "s")  # fmt: skip
    b7 = results.get("b7") or {}
    for setting, limit, what in (("autoflow-api", 2.5, "running Prefect server"), ("autoflow-api-nopool", 2.5, "running Prefect server, pool off"),
                                 ("autoflow-temp", 6.0, "temporary Prefect server")):  # fmt: skip
        add(f"B7 `autoflow trigger` beyond its cells, {what} ({setting}, median)", f"≤ {limit:.1f} s",
            _get(b7, "settings", setting, "latency", "median"), limit, "s")  # fmt: skip
    for af in AUTOFLOW:
        add(f"B8 orchestration CPU per run beyond floor-2threads, {af} (median)", "≤ 0.50 s",
            _get(b1, "b8", "beyond_floor_2threads_per_run", af, "median"), 0.5, "s")  # fmt: skip
    memory = results.get("memory") or {}
    add("Memory: RSS growth over idle ticks 10 → 50", "no growth (≤ 2 MiB)", memory.get("growth_mib_after_settling"), 2.0, "MiB")
    if memory.get("growth_mib_after_tick_50") is not None:
        add(f"Memory: RSS growth over idle ticks 50 → {50 + memory['ticks_after_tick_50']}", "no growth (≤ 1 MiB)", memory.get("growth_mib_after_tick_50"), 1.0, "MiB")
    if memory.get("growth_mib_tick_100_to_1000") is not None:
        rounds = len(memory.get("rounds") or [None])
        add("Memory: RSS growth over idle ticks 100 → 1000" + (f" (largest of {rounds} rounds)" if rounds > 1 else ""),
            "≤ 5 MiB", memory["growth_mib_tick_100_to_1000"], 5.0, "MiB")  # fmt: skip
    return found


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _ratio_text(r: dict[str, Any] | None) -> str:
    if not r or not r.get("n"):
        return "—"
    per = r["per_round"]
    return f"{r['of_medians']:.2f}× (per round {per['min']:.2f}–{per['max']:.2f}, n={r['n']})"


def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    out += [
        f"# AutoFlow benchmarks: {meta['mode']} run",
        "",
        f"Generated {meta['finished_at']} by `{meta['command']}` in {meta['duration_seconds'] / 60:.1f} min "
        f"(commit {meta.get('commit') or '?'}). Figures are median (min–max, n = repeats) unless said otherwise; "
        "ratios are ratios of medians from rounds in which the contenders alternated, with the spread of the per-round ratios.",
        "",
    ]
    if meta["mode"] != "full":
        out += ["**Quick mode**: small sizes and single repeats, to check that the harness works; these figures are not the benchmark. Run `make bench` for them.", ""]
    m = results["machine"]
    out += ["## Machine, versions, load", ""]
    out += _table(["", ""], [
        ["CPU", f"{m['cpu']} — {m['logical_cores']} logical cores ({m['physical_cores']} physical)"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        *[[name, version or "not installed"] for name, version in results["versions"].items()],
        ["load (1-min) at start", f"{meta['load_at_start']:.2f}"],
        ["load (1-min) during the run", spread_text(meta["load_during"], unit="", digits=2)],
        ["waited for a quiet machine", f"{meta['waited_seconds']:.0f} s"],
    ])  # fmt: skip
    out += ["## Targets", ""]
    out += _table(["target", "limit", "measured", "met"], [
        [t["name"], t["target"], f"{_cell(t['measured'])} {t['unit']}".strip(), {True: "yes", False: "**no**", None: "not measured"}[t["met"]]]
        for t in results["targets"]
    ])  # fmt: skip
    out += _b1(results.get("b1"))
    out += _b2(results.get("b2"), results.get("b1"))
    out += _b3(results.get("b3"))
    out += _b4(results.get("b4"), results.get("b1"))
    out += _b5(results.get("b5"))
    out += _b6(results.get("b1"))
    out += _b7(results.get("b7"))
    out += _b8(results.get("b1"))
    out += _b9(results.get("b9"))
    out += _memory(results.get("memory"), results.get("b1"))
    if results.get("errors") or results.get("notes"):
        out += ["## Errors and notes", ""]
        out += [f"- error: {e}" for e in results.get("errors", [])]
        out += [f"- {n}" for n in results.get("notes", [])]
        out.append("")
    out += ["See benchmarks/README.md for what each benchmark measures, how, and the findings.", ""]
    return "\n".join(out)


def _b1(b1: dict[str, Any] | None) -> list[str]:
    if not b1 or "contenders" not in b1:
        return ["## B1 backlog", "", f"not run{': ' + b1['error'] if b1 and b1.get('error') else ''}", ""]
    out = [
        "## B1 backlog",
        "",
        f"{b1['available_dates']} available dates, stencil {b1['stencil']}, {b1['runs']} runs × 2 notebooks = "
        f"{b1['notebooks_per_contender']} executed notebooks per contender, nothing run before; {b1['rounds']} round(s), "
        f"order rotated each round. AutoFlow: {b1['autoflow_settings']}. Prefect: {b1['prefect_server']}.",
        "",
    ]
    rows = []
    for name, c in b1["contenders"].items():
        o = c.get("outputs") or {}
        rows.append([
            f"{name}: {c['description']}", spread_text(c["wall"]),
            f"{o.get('executed_notebooks')} notebooks, total({o.get('last_date')}) = {o.get('glued_total_last_date')}/{o.get('render_total_last_date')}"
            + ("" if c["all_outputs_match"] else " **MISMATCH**"),
            spread_text(c["peak_tree_rss_mib"], unit="MiB", digits=0), spread_text(c["first_kernel_after"]),
            spread_text(c.get("kernel_wait_per_notebook"), digits=2),
        ])  # fmt: skip
    out += _table(["contender", "wall, whole process", "outputs (glued compute/render totals)", "peak RSS, process tree",
                   "start → first kernel", "kernel start per notebook (median per round)"], rows)  # fmt: skip
    out += ["Ratios (same rounds):", ""]
    out += _table(["comparison", "ratio"], [[k, _ratio_text(v)] for k, v in b1["ratios"].items()])
    same = b1.get("same_outputs") or {}
    out += [f"Same outputs: every contender's notebooks match the expected glued values: **{same.get('all_match_expected')}**.", ""]
    rss = b1.get("peak_rss_ratios") or {}
    if rss:
        out += _table(["peak RSS of the process tree", "ratio"], [[k, _ratio_text(v)] for k, v in rss.items()])
    rows = []
    for name in AUTOFLOW:
        c = b1["contenders"].get(name)
        if c:
            rows.append([name, spread_text(c.get("start_to_first_claim")), spread_text(c.get("start_to_first_notebook")),
                         spread_text(c.get("first_claim_to_last_end")), spread_text(c.get("last_end_to_exit")),
                         spread_text(c.get("notebook_seconds"))])  # fmt: skip
    if rows:
        out += ["AutoFlow's own timeline (run history and notebook metadata); (d) = first claim → last recorded end, i.e. without start-up:", ""]
        out += _table(["", "start → first claim", "start → first notebook", "(d) first claim → last end", "last end → exit", "sum of notebook durations"], rows)
    return out


def _b2(b2: dict[str, Any] | None, b1: dict[str, Any] | None) -> list[str]:
    out = ["## B2 overhead per run", ""]
    if not b2 or "per_run" not in b2:
        return out + [f"not run{': ' + b2['error'] if b2 and b2.get('error') else ''}", ""]
    out += [f"{b2['method']}; {b2['processes']} process(es), wall {spread_text(b2['process_wall'])}.", ""]
    labels = {
        "cycle_overhead": "overhead: claim → next claim, minus notebooks",
        "overhead": "overhead: claim → recorded end, minus notebooks",
        "claim_to_first_notebook": "  claim → first notebook starts",
        "between_notebooks": "  first notebook ends → second starts",
        "last_notebook_to_recorded_end": "  last notebook ends → end recorded",
        "recorded_end_to_next_claim": "  end recorded → next claim",
        "notebook_busy": "notebooks executing (for scale)",
        "wall": "run wall, claim → recorded end (for scale)",
    }
    rows = [[label, spread_text(b2["per_run"].get(key), digits=3)] for key, label in labels.items()]
    par = _get(b1, "contenders", "autoflow-api", "per_run", "overhead")
    if par:
        rows.append(["overhead: claim → recorded end, minus notebooks, in B1 (2 runs at once)", spread_text(par, digits=3)])
    out += _table(["per run (steady state)", "seconds"], rows)
    for name, prof in (b2.get("profile") or {}).items():
        kind = "wall clock (--idle)" if name.startswith("wall") else "CPU (on-CPU samples only)"
        out += [f"py-spy {kind}, {name}: {prof['runs']} runs, process {prof['process_wall']} s, {prof['rate_hz']} Hz; raw stacks: `{prof['file']}`", ""]
        per_run = prof["run_and_task_threads_beyond_notebooks_per_run"]
        out += _table(["workflow-run and notebook-task threads, beyond the notebooks", "seconds per run"], [[k, v] for k, v in list(per_run.items())[:10]])
        main = _get(prof, "seconds_by_role", "main (start-up, then waiting)") or {}
        out += _table(["main thread (start-up)", "seconds"], [[k, v] for k, v in list(main.items())[:8]])
        out += _table(["hot frames in run/task threads (beyond notebooks)", "seconds per run"], [[f"`{f}`", s] for f, s in prof["hot_frames_per_run"][:8]])
    return out


def _b3(b3: dict[str, Any] | None) -> list[str]:
    out = ["## B3 a tick at scale", ""]
    if not b3 or "sizes" not in b3:
        return out + [f"not run{': ' + b3['error'] if b3 and b3.get('error') else ''}", ""]
    out += [f"{b3['entries']} sensor entries; `expire_abandoned()` + `current_plan()` in-process with a warm RunStore, {b3['repeats']} repeats after one cold tick; databases alternating.", ""]
    rows = []
    for size in b3["sizes"]:
        for kind, d in size["databases"].items():
            rows.append([
                f"{size['dates']} dates, {size['attempts']} attempts", kind, spread_text(d["tick_reads_and_plan"], digits=3),
                d["cold_first_tick"], ", ".join(map(str, d["statements"])), spread_text(d["date_source"], digits=3),
                spread_text(d["history_read"], digits=3), spread_text(d["plan_pure"], digits=3), f"{d['due']} / {d['skipped']}",
            ])  # fmt: skip
    out += _table(["size", "database", "tick reads + plan", "cold first tick", "SQL statements", "date source", "history read", "plan (pure)", "due / skipped"], rows)
    big = b3["sizes"][-1]
    if big.get("cli_plan"):
        out += _table(["`autoflow plan`, whole process, largest size", "wall"], [[k, spread_text(v)] for k, v in big["cli_plan"].items()])
    if big.get("sql_alone"):
        out += [f"The latest-attempts query alone at {big['dates']} dates (driver rows, no decoding into Attempts):", ""]
        out += _table(["database", "query", "wall", "rows"], [
            [kind, name, spread_text(v, digits=3), v.get("rows")] for kind, q in big["sql_alone"].items() for name, v in q.items()
        ])  # fmt: skip
    for kind, prof in (big.get("profile") or {}).items():
        out += [f"cProfile of one tick's reads + plan, {big['dates']} dates, {kind} ({prof['wall_under_cprofile']} s under the profiler), own time by area:", ""]
        out += _table(["area", "seconds", "share"], [[a, v["seconds"], f"{v['share'] * 100:.0f}%"] for a, v in prof["own_time_by_area"].items()])
        out += _table(["top functions (own time)", "seconds", "calls"], [[f"`{f['function']}`", f["own_seconds"], f["calls"]] for f in prof["top_functions"][:8]])
    return out


def _b5(b5: dict[str, Any] | None) -> list[str]:
    out = ["## B5 scale-out through a Prefect work pool", ""]
    if not b5 or "settings" not in b5:
        return out + [f"not run{': ' + b5['error'][-300:] if b5 and b5.get('error') else ''}", ""]
    separate = b5.get("measured_separately")
    if separate:
        out += [f"Measured in a separate run: `{separate['command']}` at {separate['started_at']} (commit {separate.get('commit') or '?'}; load {separate['load_at_start']:.2f} at its start).", ""]
    out += [
        f"{b5['runs']} runs of a notebook that waits {b5['pause_seconds']:g} s, submitted by one service tick to a work pool; "
        f"`autoflow worker` processes poll every {b5['worker_query_seconds']:g} s. Throughput: runs per minute from the first "
        "claim to the last recorded end.",
        "",
    ]
    out += _table(["slots", "workers", "succeeded", "span", "runs/min", "speed-up", "claim → first cell (median)"], [
        [r["slots"], r["workers"], f"{r['succeeded']}/{r['runs']}", f"{r['span_seconds']:.1f} s", r["runs_per_minute"],
         "1.00×" if r["slots"] == 1 else (f"{b5['throughput_speedup'].get(str(r['slots']) + ' / 1', 0):.2f}×"),
         spread_text(r["latency"]["claim to first cell"], digits=2)]
        for r in b5["settings"]
    ])  # fmt: skip
    out += ["Where the time from claim to first cell goes (the first run per slot, which met an idle worker; all settings):", ""]
    names = ["submission", "waiting for a worker", "process start and imports", "flow start to first cell"]
    rows = []
    for name in names:
        values = [v for r in b5["settings"] for v in r["latency"][name].get("values", [])]
        rows.append([name, f"{statistics.median(values):.2f} s" if values else "—"])
    out += _table(["part", "median"], rows)
    return out


def _b9(b9: dict[str, Any] | None) -> list[str]:
    out = ["## B9 report site", ""]
    if not b9 or "sizes" not in b9:
        return out + [f"not run{': ' + b9['error'] if b9 and b9.get('error') else ''}", ""]
    out += [f"`build_site` on a synthetic history; notebook rendering {b9['rendering']}. Seconds per build.", ""]
    builds = list(b9["sizes"][0]["seconds"])
    out += _table(["runs", "attempts", *builds, "site files"], [
        [s["runs"], s["attempts"], *[s["seconds"][b] for b in builds], s["site_files"]] for s in b9["sizes"]
    ] + [[f"ratio {b9['ratio_of']}", "", *[b9["ratio"][b] for b in builds], ""]])  # fmt: skip
    return out


def _b4(b4: dict[str, Any] | None, b1: dict[str, Any] | None) -> list[str]:
    out = ["## B4 start-up", ""]
    if b4 and "wall" in b4:
        out += [f"Inputs: `{b4['inputs']}`; repeated subprocess timing (first round dropped).", ""]
        out += _table(["command", "wall"], [[k, spread_text(v, digits=3)] for k, v in b4["wall"].items()])
        imports = b4.get("imports") or {}
        if imports.get("by_package"):
            out += [f"`python -X importtime` of `autoflow validate`: {imports['total_seconds']} s of imports in all; heaviest packages (cumulative):", ""]
            out += _table(["package", "seconds"], [[p["package"], p["seconds"]] for p in imports["by_package"][:8]])
    rows = []
    for name in AUTOFLOW:
        c = _get(b1, "contenders", name)
        if c:
            rows.append([name, spread_text(c.get("first_kernel_after")), spread_text(c.get("start_to_first_claim"))])
    if rows:
        out += ["From `python -m autoflow` (fork) to the first notebook kernel process (B1, process-tree sampling every 0.1 s) and to the first claim (run history):", ""]
        out += _table(["", "start → first kernel", "start → first claim"], rows)
    return out


def _memory(memory: dict[str, Any] | None, b1: dict[str, Any] | None) -> list[str]:
    out = ["## Memory", ""]
    rows = []
    for name, c in (_get(b1, "contenders") or {}).items():
        rows.append([name, spread_text(c["peak_main_rss_mib"], unit="MiB", digits=0), spread_text(c["peak_tree_rss_mib"], unit="MiB", digits=0)])
    if rows:
        out += ["Peak RSS during B1 (psutil, every 0.1 s; the tree includes kernels and, for autoflow-temp, its Prefect server):", ""]
        out += _table(["contender", "main process", "process tree"], rows)
    if memory and "rss_mib_after_tick" in memory:
        out += [f"Idle ticks: {memory['method']}.", ""]
        out += _table(["", "value"], [
            ["ticks", memory["ticks"]],
            ["tick wall", spread_text(memory["tick_seconds"], digits=3)],
            ["RSS before the first tick", f"{memory['rss_mib_before_first_tick']} MiB"],
            *[[f"RSS after tick {k}", f"{v} MiB"] for k, v in memory["rss_mib_after_tick"].items()],
            ["growth after settling (tick 10 → 50)", f"{memory['growth_mib_after_settling']} MiB ({memory['growth_kib_per_tick_after_settling']} KiB per tick)"],
            ["growth after tick 50", "—" if memory.get("growth_mib_after_tick_50") is None else f"{memory['growth_mib_after_tick_50']} MiB over {memory['ticks_after_tick_50']} ticks"],
        ])  # fmt: skip
    elif memory:
        out += [f"Idle ticks not measured: {memory.get('error', '?')[-300:]}", ""]
    if memory and memory.get("before"):
        out += _before_and_after(memory)
    return out


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _before_and_after(memory: dict[str, Any]) -> list[str]:
    """Idle ticks on this checkout and on an earlier commit, round by round (they alternated)."""
    before = memory["before"]
    out = [f"Idle ticks, this checkout beside `{before['ref']}` ({before['commit']}: {before['subject']}), "
           f"alternating in the same session; RSS in MiB:", ""]  # fmt: skip
    rows = []
    for name, rounds in (("this checkout", memory.get("rounds") or []), (f"before ({before['ref']})", before.get("rounds") or [])):
        for i, r in enumerate(rounds, 1):
            if "rss_mib_after_tick" not in r:
                rows.append([name, i, "—", "—", "—", "—", "—", "—", "—", "failed"])
                continue
            at, growth, freed = r["rss_mib_after_tick"], r.get("growth_mib_tick_100_to_1000"), r.get("gc_collected_per_tick_after_tick_100")
            rows.append([name, i, *(_mib(at.get(k)) for k in ("10", "100", "1000")), _mib(r.get("rss_mib_after_malloc_trim")), "—" if growth is None else f"{growth:+.1f}",
                         "—" if freed is None else f"{freed:.0f}", r.get("threads_after_last_tick"),
                         spread_text(r["tick_seconds"], digits=3)])  # fmt: skip
    out += _table(["", "round", "tick 10", "tick 100", "tick 1000", "then malloc_trim(0)", "growth 100 → 1000", "objects in cycles per tick (gc-freed, after tick 100)", "threads", "tick wall"], rows)
    out += [f"Largest growth 100 → 1000: this checkout {memory.get('growth_mib_tick_100_to_1000')} MiB, "
            f"before {before.get('growth_mib_tick_100_to_1000')} MiB.", ""]  # fmt: skip
    return out


def _b6(b1: dict[str, Any] | None) -> list[str]:
    out = ["## B6 per-notebook overhead (from B1's runs)", ""]
    b6 = _get(b1, "b6")
    if not b6:
        return out + ["not measured (run B1)", ""]
    out += [f"{b6['method']}. floor and floor-2threads start a kernel for every notebook (reference).", ""]
    rows = [
        [name, c["pool"] or "—", c["first_runs_left_out"], spread_text(c["steady"], digits=3),
         "—" if not c["steady"].get("n") else f"{c['steady']['q1']:.3f}–{c['steady']['q3']:.3f} s",
         spread_text(c["first_runs"], digits=3), ", ".join("—" if m is None else f"{m:.3f}" for m in c["per_round_median"])]
        for name, c in b6["contenders"].items()
    ]  # fmt: skip
    return out + _table(["contender", "kernel pool", "first runs left out", "steady state: median (min–max, n)", "quartiles",
                         "first runs", "median per round"], rows)  # fmt: skip


def _b7(b7: dict[str, Any] | None) -> list[str]:
    out = ["## B7 one-off latency: `autoflow trigger`", ""]
    if not b7 or "settings" not in b7:
        return out + [f"not run{': ' + b7['error'][-300:] if b7 and b7.get('error') else ''}", ""]
    out += [f"{b7['method']}; {b7['repeats']} repeat(s) per setting, alternating.", ""]
    parts = {
        "start_to_first_log_line": "start → first log line",
        "first_log_line_to_claim": "→ run claimed",
        "claim_to_first_cell": "→ first cell starts",
        "between_cells": "between the cells (second kernel, papermill)",
        "last_cell_to_exit": "last cell ends → exit",
        "cells": "cells (subtracted)",
    }
    names = list(b7["settings"])
    rows = [["wall, whole process", *[spread_text(b7["settings"][n]["wall"]) for n in names]],
            ["**latency: wall minus cells**", *[spread_text(b7["settings"][n]["latency"]) for n in names]]]  # fmt: skip
    rows += [[label, *[spread_text(_get(b7, "settings", n, "parts", key) or {}) for n in names]] for key, label in parts.items()]
    return out + _table(["", *names], rows)


def _b8(b1: dict[str, Any] | None) -> list[str]:
    out = ["## B8 orchestration CPU (from B1's runs)", ""]
    b8 = _get(b1, "b8")
    if not b8:
        return out + ["not measured (run B1)", ""]
    out += [f"{b8['method']}; {b8['runs']} workflow runs per contender.", ""]
    rows = [
        [name, spread_text(c["total"], digits=1), spread_text(c["process_tree"], digits=1), spread_text(c["process_tree_sampled"], digits=1),
         spread_text(c["prefect_server"], digits=2) if c["prefect_server"].get("n") else "—",
         spread_text(c["prefect_server_idle"], digits=2) if c["prefect_server_idle"].get("n") else "—",
         f"{c['unreaped_cpu']:.2f} s, {c['orphans']} left running",
         spread_text(b8["beyond_floor_2threads_per_run"].get(name) or {}, digits=3)]
        for name, c in b8["contenders"].items()
    ]  # fmt: skip
    return out + _table(["contender", "CPU total", "process tree (rusage)", "process tree (psutil, lower bound)", "running Prefect server",
                         "running Prefect server, idle (not counted)", "missed by rusage / orphans", "beyond floor-2threads, per run"], rows)  # fmt: skip
