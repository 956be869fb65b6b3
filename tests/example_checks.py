"""What a run of the self-contained example (examples/local) must leave in its outputs directory.

Shared by the end-to-end test on this machine and the container test, which both run the
example once with ``schedule: null``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import scrapbook as sb

REPO = Path(__file__).resolve().parents[1]
LOCAL_EXAMPLE = REPO / "examples" / "local"
WORKFLOW = "daily-call-activity"
#: data for 1-10 March 2024 less 6 March; the stencil [[-2, 0]] needs the two days before each date
EXPECTED_DATES = ("2024-03-03", "2024-03-04", "2024-03-05", "2024-03-09", "2024-03-10")


@dataclass(frozen=True)
class Run:
    """One row of the run history."""

    reference_date: str
    state: str
    attempt: int
    notebooks: list[str]
    reports: list[str]
    error: str | None


def history(db: Path) -> list[Run]:
    """The run history in the SQLite database ``db``, oldest first."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT reference_date, state, attempt, notebooks, reports, error FROM autoflow_run_attempts "
            "WHERE workflow = ? ORDER BY id",
            (WORKFLOW,),
        ).fetchall()
    return [Run(str(d), s, int(a), json.loads(n), json.loads(r), e) for d, s, a, n, r, e in rows]


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def pdf_image_count(pdf: Path) -> int:
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    return max(len(listing.strip().splitlines()) - 2, 0)  # two header lines


def check_local_example_outputs(outputs: Path, *, service_outputs: str | None = None) -> list[Run]:
    """Assert that ``outputs`` holds one successful run of the example per expected date.

    ``service_outputs`` is the outputs directory as the service saw it (in a container,
    /mounts/outputs): the paths recorded in the history start with it. Returns the history.
    """
    seen_as = PurePosixPath(service_outputs or str(outputs))
    runs = history(outputs / "autoflow.db")
    assert sorted(r.reference_date for r in runs) == list(EXPECTED_DATES), runs
    for run in runs:
        assert (run.state, run.attempt, run.error) == ("success", 1, None), run
        assert len(run.notebooks) == 2 and len(run.reports) == 1, run
        for recorded in [*run.notebooks, *run.reports]:
            local = outputs / PurePosixPath(recorded).relative_to(seen_as)
            assert local.is_file(), f"{recorded} is in the history but not in {outputs}"
            assert run.reference_date in local.name

    notebooks = sorted(p.name for p in (outputs / "notebooks").iterdir())
    reports = sorted((outputs / "reports").iterdir())
    assert len(notebooks) == 2 * len(EXPECTED_DATES) and len(reports) == len(EXPECTED_DATES), (notebooks, reports)
    for day in EXPECTED_DATES:
        assert sum(n.startswith(f"analyse_calls__{WORKFLOW}__{day}__") for n in notebooks) == 1, notebooks
        assert sum(n.startswith(f"daily_report__{WORKFLOW}__{day}__") for n in notebooks) == 1, notebooks
        assert sum(r.name.startswith(f"daily_report__{WORKFLOW}__{day}__") for r in reports) == 1, reports
    for pdf in reports:
        assert pdf.read_bytes().startswith(b"%PDF-"), pdf
        assert pdf_image_count(pdf) >= 1, f"{pdf.name} has no figure"

    # what the example is about: the festival on the 9th, the outage on the 10th, a quiet 3rd
    by_day = {day: next(r for r in reports if f"__{day}__" in r.name) for day in EXPECTED_DATES}
    quiet, festival, outage = (pdf_text(by_day[d]) for d in ("2024-03-03", "2024-03-09", "2024-03-10"))
    assert "Daily call activity" in outage and "Regions to watch" in outage and "Calls by region" in outage
    assert "No region" in quiet and "calls changed by 20 % or more." in quiet  # pandoc curls the apostrophe
    assert "Riverbend" in festival.split("Calls by region")[0] and "%" in festival
    assert "Highmoor" in outage.split("Calls by region")[0]
    analysis = next(p for p in (outputs / "notebooks").iterdir() if p.name.startswith(f"analyse_calls__{WORKFLOW}__2024-03-10__"))
    summary = sb.read_notebook(str(analysis)).scraps["summary"].data
    assert summary["baseline_dates"] == ["2024-03-08", "2024-03-09"] and set(summary["flagged_regions"]) == {"Highmoor", "Riverbend"}
    return runs
