"""B9 report site: ``build_site`` over a synthetic history of 1,000 and 10,000 runs (quick: 100 and 1,000).

Each run is one successful attempt (every 10th failed first, then succeeded) with its own small
executed-notebook file and PDF report file (a few bytes each: the site links or copies them,
it never reads a report). Notebook rendering is stubbed: every notebook gets the same fixed
page, so the figures are the site's own work (grouping, templates, linking, the swap) and not
nbconvert's (about 50 ms per new notebook on this machine, paid once per notebook: unchanged
notebooks are carried over). Three builds per size: the first (everything new), a rebuild with
nothing changed, and a rebuild after one more run. Linear growth shows as a 10k/1k ratio near 10.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import log
from benchmarks.context import Bench

STUB_PAGE = b"<!DOCTYPE html><html><body><p>rendered notebook (stub)</p></body></html>\n"


def _history(root: Path, runs: int) -> tuple[Any, list[Any]]:
    from autoflow.spec.models import AutoFlowConfig, NotebookSpec, OutputSpec, SensorSpec, WorkflowSpec
    from autoflow.store import Attempt

    inputs = root / "inputs"
    spec = WorkflowSpec("bench", {
        "analysis": NotebookSpec("analysis", "analysis.ipynb", inputs / "analysis.ipynb"),
        "report": NotebookSpec("report", "report.ipynb", inputs / "report.ipynb", parameters={"a": "analysis"}, output=OutputSpec()),
    })  # fmt: skip
    config = AutoFlowConfig(inputs_dir=inputs, workflows={"bench": spec}, sensor=SensorSpec(schedule=None, workflows=()))
    notebooks, reports = root / "outputs" / "notebooks", root / "outputs" / "reports"
    notebooks.mkdir(parents=True)
    reports.mkdir(parents=True)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    attempts, next_id = [], 1
    for n in range(runs):
        day = dt.date(2000, 1, 1) + dt.timedelta(days=n)
        tries = ("failed", "success") if n % 10 == 0 else ("success",)
        for number, state in enumerate(tries, 1):
            stem = f"report__bench__{day}__00000000__{n:06d}{number}"
            nb = notebooks / f"{stem}.ipynb"
            nb.write_text("{}")
            outputs = []
            if state == "success":
                outputs.append(reports / f"{stem}.pdf")
                outputs[0].write_bytes(b"%PDF-1.4\n")
            started = start + dt.timedelta(minutes=next_id)
            attempts.append(Attempt(
                id=next_id, workflow="bench", parameters={}, params_hash="0" * 64, reference_date=day, date_ranges=[(day, day)],
                state=state, attempt=number, started_at=started, finished_at=started + dt.timedelta(seconds=42), heartbeat_at=started,
                owner="bench", error="ValueError: synthetic\nTraceback ..." if state == "failed" else None,
                notebooks=[str(nb)], reports=[str(p) for p in outputs], flow_run_id=None, trigger="sensor",
            ))  # fmt: skip
            next_id += 1
    return config, attempts


def run(bench: Bench) -> dict[str, Any]:
    import dataclasses

    from autoflow import site

    sizes = (100, 1_000) if bench.cfg.mode == "quick" else (1_000, 10_000)
    original = site._Builder.render_notebook
    site._Builder.render_notebook = lambda self, path: STUB_PAGE  # type: ignore[method-assign]
    results: list[dict[str, Any]] = []
    try:
        for runs in sizes:
            root = bench.work / "b9" / str(runs)
            shutil.rmtree(root, ignore_errors=True)
            config, attempts = _history(root, runs)
            outputs = root / "outputs"
            timings = {}
            for build, history in (("first", attempts), ("unchanged", attempts), ("one more run", attempts + [dataclasses.replace(attempts[-1], id=len(attempts) + 1, attempt=attempts[-1].attempt + 1)])):
                began = time.perf_counter()
                site.build_site(config, history, outputs)
                timings[build] = round(time.perf_counter() - began, 3)
            files = sum(1 for p in (outputs / "site").rglob("*") if p.is_file())
            results.append({"runs": runs, "attempts": len(attempts), "seconds": timings, "site_files": files})
            log(f"B9 {runs} runs: {timings}")
            shutil.rmtree(root, ignore_errors=True)
    finally:
        site._Builder.render_notebook = original  # type: ignore[method-assign]
    small, big = results[0]["seconds"], results[-1]["seconds"]
    ratio = {build: round(big[build] / small[build], 1) if small[build] else None for build in small}
    return {"sizes": results, "ratio": ratio, "ratio_of": f"{results[-1]['runs']}/{results[0]['runs']}", "rendering": "stubbed (one fixed page per notebook)"}
