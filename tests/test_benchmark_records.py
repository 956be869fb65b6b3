"""What the benchmarks read from executed notebooks, and the targets they check (no notebook is run)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import report, workload


def _executed(path: Path, date: str, start: str, wall: float, cells: list[float | None]) -> None:
    nb = {
        "metadata": {"papermill": {"start_time": start, "duration": wall, "parameters": {"reference_date": date}}},
        "cells": [{"cell_type": "code", "metadata": {"papermill": {"duration": d}}} for d in cells] + [{"cell_type": "markdown", "metadata": {}}],
    }
    path.write_text(json.dumps(nb))


def test_notebook_overhead_is_wall_minus_cells_and_first_runs_are_apart(tmp_path: Path) -> None:
    _executed(tmp_path / "compute-a.ipynb", "2016-01-02", "2026-01-01T00:00:00+00:00", 2.0, [0.5, 0.25, None])
    _executed(tmp_path / "render-a.ipynb", "2016-01-02", "2026-01-01T00:00:02+00:00", 3.0, [1.0])
    _executed(tmp_path / "compute-b.ipynb", "2016-01-03", "2026-01-01T00:00:01+00:00", 1.5, [1.0])
    (tmp_path / "unrelated.ipynb").write_text("{}")
    found = workload.notebook_overheads(tmp_path)
    assert sorted(round(n.overhead, 3) for n in found) == [0.5, 1.25, 2.0]
    first, steady = workload.first_runs_apart(found, 1)
    assert {n.reference_date for n in first} == {"2016-01-02"}
    assert [n.reference_date for n in steady] == ["2016-01-03"]


def test_targets_of_b6_b7_b8() -> None:
    results = {
        "b1": {
            "contenders": {"autoflow-api": {}, "autoflow-api-nopool": {}},
            "b6": {"contenders": {"autoflow-api": {"steady": {"median": 0.1}}, "autoflow-api-nopool": {"steady": {"median": 1.2}}}},
            "b8": {"beyond_floor_2threads_per_run": {"autoflow-api": {"median": 0.4}}},
        },
        "b7": {"settings": {"autoflow-temp": {"latency": {"median": 7.0}}}},
    }
    met = {t["name"].split(" (")[0]: t["met"] for t in report.targets(results)}
    assert met["B6 per-notebook overhead beyond its cells, pool on"] is True
    assert met["B6 per-notebook overhead beyond its cells, pool off"] is False
    assert met["B7 `autoflow trigger` beyond its cells, temporary Prefect server"] is False
    assert met["B7 `autoflow trigger` beyond its cells, running Prefect server"] is None
    assert met["B8 orchestration CPU per run beyond floor-2threads, autoflow-api"] is True
