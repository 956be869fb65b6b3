"""The B1 workload: two notebooks per reference date, the dates, and checks of what was produced.

``compute.ipynb`` works out something small over ``date_ranges`` and glues it with scrapbook;
``render.ipynb`` reads that glue from the executed compute notebook and shows a pandas table and
a matplotlib bar chart. Every contender runs these very files; the parameters cell also declares
``product`` and ``upstream`` (Ploomber injects them; papermill and AutoFlow leave them alone).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

FIRST_DATE = dt.date(2016, 1, 1)
#: the stencil of the benchmark's sensor entry: the day before and the day itself
STENCIL = (-1, 0)

COMPUTE_PARAMETERS = """\
reference_date = "2016-01-02"
date_ranges = [["2016-01-01", "2016-01-01"], ["2016-01-02", "2016-01-02"]]
product = None
upstream = None"""

COMPUTE = """\
import datetime as dt
import scrapbook as sb

days = []
for start, end in date_ranges:
    day, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    while day <= last:
        days.append(day)
        day += dt.timedelta(days=1)
# a stand-in for "calls per day": small, deterministic, different for every date
counts = {day.isoformat(): (day.toordinal() * 7919) % 1000 + 100 for day in days}
total = sum(counts.values())
sb.glue("reference_date", reference_date)
sb.glue("counts", counts)
sb.glue("total", total)
print(f"{reference_date}: {len(days)} days, {total} calls")"""

RENDER_PARAMETERS = """\
reference_date = "2016-01-02"
compute_notebook = None
product = None
upstream = None"""

RENDER = [
    "md:# Calls up to the reference date",
    """\
import matplotlib.pyplot as plt
import pandas as pd
import scrapbook as sb

scraps = sb.read_notebook(compute_notebook).scraps
counts = scraps["counts"].data
table = pd.DataFrame({"date": list(counts), "calls": list(counts.values())})
table""",
    """\
ax = table.plot.bar(x="date", y="calls", legend=False, title=f"Calls up to {reference_date}")
ax.set_ylabel("calls")
plt.show()""",
    """\
sb.glue("reference_date", reference_date)
sb.glue("total_seen", int(table["calls"].sum()))""",
]

WORKFLOWS_YML = """\
# AutoFlow benchmark B1: two notebooks per reference date (written by benchmarks/workload.py)
workflows:
  - name: backlog
    notebooks:
      compute:
        filename: compute.ipynb
        parameters:
          reference_date: reference_date
          date_ranges: date_ranges
      render:
        filename: render.ipynb
        parameters:
          reference_date: reference_date
          compute_notebook: compute
available_dates_sensor:
  schedule: null
  cdr_types: [calls]
  workflows:
    - workflow_name: backlog
      date_stencil: [-1, 0]
"""


def available_dates(count: int) -> list[dt.date]:
    """``count`` consecutive dates from 2016-01-01."""
    return [FIRST_DATE + dt.timedelta(days=i) for i in range(count)]


@dataclass(frozen=True)
class Run:
    """One workflow run: a reference date and the date ranges its notebooks get."""

    reference_date: str
    date_ranges: list[list[str]]

    def as_json(self) -> dict[str, Any]:
        return {"reference_date": self.reference_date, "date_ranges": self.date_ranges}


def due_runs(dates: list[dt.date]) -> list[Run]:
    """The runs a stencil of [-1, 0] allows over ``dates`` (every date whose day before is there too)."""
    have = set(dates)
    runs = []
    for day in sorted(have):
        needed = [day + dt.timedelta(days=offset) for offset in STENCIL]
        if all(d in have for d in needed):
            runs.append(Run(day.isoformat(), [[d.isoformat(), d.isoformat()] for d in needed]))
    return runs


def _cell(source: str, *, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    if source.startswith("md:"):
        made = nbformat.v4.new_markdown_cell(source[3:])
    else:
        made = nbformat.v4.new_code_cell(source)
    if tags:
        made.metadata["tags"] = list(tags)
    return made


def _notebook(parameters: str, cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [_cell(parameters, tags=("parameters",)), *(_cell(c) for c in cells)]
    return nb


def write_inputs(directory: Path, *, extra_compute_parameters: tuple[str, ...] = ()) -> Path:
    """Write compute.ipynb, render.ipynb and workflows.yml into ``directory``; returns it.

    ``extra_compute_parameters`` are more names compute.ipynb's parameters cell defines (as
    ``None``), for a workflows.yml that passes them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    parameters = "\n".join([COMPUTE_PARAMETERS, *(f"{name} = None" for name in extra_compute_parameters)])
    nbformat.write(_notebook(parameters, [COMPUTE]), directory / "compute.ipynb")
    nbformat.write(_notebook(RENDER_PARAMETERS, RENDER), directory / "render.ipynb")
    (directory / "workflows.yml").write_text(WORKFLOWS_YML)
    return directory


def write_runs(path: Path, runs: list[Run]) -> Path:
    path.write_text(json.dumps([r.as_json() for r in runs]))
    return path


# -- checking what a contender produced ------------------------------------------------------


@dataclass
class Produced:
    """What one contender's output directory holds."""

    notebooks: int
    #: reference date -> (compute's glued total, render's glued total_seen)
    totals: dict[str, tuple[int | None, int | None]]
    #: render notebooks without a PNG figure or an HTML table among their outputs
    incomplete: list[str]

    def summary(self) -> dict[str, Any]:
        last = max(self.totals) if self.totals else None
        return {
            "executed_notebooks": self.notebooks,
            "runs": len(self.totals),
            "last_date": last,
            "glued_total_last_date": self.totals[last][0] if last else None,
            "render_total_last_date": self.totals[last][1] if last else None,
            "incomplete_render_notebooks": len(self.incomplete),
        }


def _scraps(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Scrapbook's glued values, read straight from the outputs (no scrapbook import needed)."""
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime, data in output.get("data", {}).items():
                if mime.startswith("application/scrapbook.scrap."):
                    found[data["name"]] = data["data"]
    return found


def inspect_outputs(directory: Path) -> Produced:
    """Count executed notebooks under ``directory`` and read their glued values."""
    paths = sorted(p for p in directory.rglob("*.ipynb") if p.name.startswith(("compute", "render")))
    totals: dict[str, list[int | None]] = {}
    incomplete: list[str] = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        scraps = _scraps(nb)
        date = scraps.get("reference_date")
        if date is None:
            incomplete.append(path.name)
            continue
        pair = totals.setdefault(date, [None, None])
        if path.name.startswith("compute"):
            pair[0] = scraps.get("total")
        else:
            pair[1] = scraps.get("total_seen")
            mimes = {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}
            if not {"image/png", "text/html"} <= mimes:
                incomplete.append(path.name)
    return Produced(len(paths), {d: (a, b) for d, (a, b) in sorted(totals.items())}, incomplete)


def expected_totals(runs: list[Run]) -> dict[str, tuple[int, int]]:
    """What compute.ipynb glues for each run, computed here (the ground truth)."""
    out = {}
    for run in runs:
        total = 0
        for start, end in run.date_ranges:
            day, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
            while day <= last:
                total += (day.toordinal() * 7919) % 1000 + 100
                day += dt.timedelta(days=1)
        out[run.reference_date] = (total, total)
    return out


def kernel_waits(directory: Path) -> list[float]:
    """Per executed notebook: papermill's start to its first cell's start (kernel start-up, mostly).

    papermill stamps ``metadata.papermill.start_time`` before it launches the kernel and each
    cell's ``start_time`` when the cell begins, so the gap is the kernel's launch and handshake.
    """
    waits = []
    for path in sorted(p for p in directory.rglob("*.ipynb") if p.name.startswith(("compute", "render"))):
        try:
            nb = json.loads(path.read_text())
            begun = dt.datetime.fromisoformat(nb["metadata"]["papermill"]["start_time"])
            first = min(
                dt.datetime.fromisoformat(c["metadata"]["papermill"]["start_time"])
                for c in nb["cells"]
                if c.get("cell_type") == "code" and c.get("metadata", {}).get("papermill", {}).get("start_time")
            )
        except (OSError, KeyError, ValueError, TypeError):
            continue
        waits.append((first - begun).total_seconds())
    return waits


@dataclass(frozen=True)
class NotebookOverhead:
    """One executed notebook, as papermill recorded it: its wall time and its cells' (seconds)."""

    reference_date: str
    started: float  # epoch seconds
    wall: float
    cells: float

    @property
    def overhead(self) -> float:
        """Wall beyond the cells: kernel start and shutdown, papermill's reading and writing."""
        return self.wall - self.cells


def notebook_overheads(directory: Path) -> list[NotebookOverhead]:
    """Every executed notebook under ``directory``: papermill's notebook duration and the sum of its cells'.

    papermill stamps ``metadata.papermill.start_time`` before it starts the kernel and
    ``end_time``/``duration`` after the kernel is shut down, and each cell's
    ``metadata.papermill.duration`` around the cell's execution.
    """
    found = []
    for path in sorted(p for p in directory.rglob("*.ipynb") if p.name.startswith(("compute", "render"))):
        try:
            nb = json.loads(path.read_text())
            meta = nb["metadata"]["papermill"]
            started = dt.datetime.fromisoformat(meta["start_time"])
            wall = meta.get("duration")
            if wall is None:
                wall = (dt.datetime.fromisoformat(meta["end_time"]) - started).total_seconds()
            cells = sum(float(c["metadata"]["papermill"].get("duration") or 0.0) for c in nb["cells"] if "papermill" in c.get("metadata", {}))
            date = str(meta.get("parameters", {}).get("reference_date"))
        except (OSError, KeyError, ValueError, TypeError):
            continue
        moment = started if started.tzinfo else started.replace(tzinfo=dt.timezone.utc)
        found.append(NotebookOverhead(date, moment.timestamp(), float(wall), cells))
    return found


def first_runs_apart(notebooks: list[NotebookOverhead], runs: int) -> tuple[list[NotebookOverhead], list[NotebookOverhead]]:
    """(the notebooks of the first ``runs`` runs to start, the others): cold start and steady state."""
    begun: dict[str, float] = {}
    for nb in notebooks:
        begun[nb.reference_date] = min(nb.started, begun.get(nb.reference_date, nb.started))
    first = set(sorted(begun, key=lambda d: begun[d])[:runs])
    return [nb for nb in notebooks if nb.reference_date in first], [nb for nb in notebooks if nb.reference_date not in first]
