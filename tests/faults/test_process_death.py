"""SIGKILL the service anywhere in a run, restart it: every run ends `success` exactly once, nothing is left behind.

Two chains run side by side, one on SQLite and one on PostgreSQL. Each trial adds a new date,
starts ``python -m autoflow`` (one tick), and kills it with SIGKILL at one of these points:

- ``claimed``: the run is claimed, its flow not started (AUTOFLOW_TEST_FREEZE_AT=claimed);
- ``kernel``: a notebook's kernel is running a cell;
- ``report``: pandoc or asciidoctor-pdf is making the PDF;
- ``recording-end``: the success is written but not committed (AUTOFLOW_TEST_FREEZE_AT=recording-end);
- ``random``: a seeded random delay after the tick starts, wherever the service then is.

After each kill, every process the service had started must end by itself (kernels notice
their parent is gone), and no run may have two successes. At the end one more tick must
finish everything: every date's run has exactly one success, as its latest attempt, with its
notebook and a complete PDF on disk, and no attempt is left `running`.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.databases import postgres_url_for
from tests.faults.conftest import Figures
from tests.faults.harness import Deployment, Service, describe, still_running, tracebacks, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

SEED = 20160101
TRIALS_PER_CHAIN = 10
POINTS = ("claimed", "kernel", "report", "recording-end", "random")

WORKFLOWS = """\
workflows:
  - name: daily
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, marker_dir: marker_dir}
        output: {format: pdf}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - workflow_name: daily
      parameters: {marker_dir: MARKERS}
"""
NOTEBOOKS = {
    "work.ipynb": (
        "reference_date = None\nmarker_dir = None",
        [
            "md:# Daily report",
            "import os, pathlib, time\npathlib.Path(marker_dir, f'{reference_date}.{os.getpid()}').write_text('started')\ntime.sleep(0.5)",
            "print(f'report for {reference_date}')",
        ],
    )
}
FIRST_DATE = dt.date(2016, 1, 1)


@dataclass
class Chain:
    """What one chain of kills did and found."""

    backend: str
    kills: Counter[str] = field(default_factory=Counter)
    random_landed: Counter[str] = field(default_factory=Counter)
    orphans: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dates: list[dt.date] = field(default_factory=list)
    seconds: float = 0.0
    connection_files: int = 0
    finished_before_kill: int = 0
    report_workspaces: int = 0


def _add_date(app: Deployment, chain: Chain) -> None:
    day = FIRST_DATE + dt.timedelta(days=len(chain.dates))
    (app.inputs / "data").mkdir(exist_ok=True)
    (app.inputs / "data" / f"{day.isoformat()}.csv").write_text("x\n")
    chain.dates.append(day)


def _new_markers(app: Deployment, before: set[str]) -> bool:
    return bool({p.name for p in app.markers.iterdir()} - before)


def _kill_at(point: str, service: Service, app: Deployment, rng: random.Random) -> str:
    """Wait until the service reaches ``point`` (or ends); which it was, for the caller to SIGKILL."""
    markers = {p.name for p in app.markers.iterdir()}

    def reached() -> str | None:
        if not service.alive():
            return "exited"
        if point in ("claimed", "recording-end"):
            return point if service.frozen() else None
        if point == "kernel":
            return point if service.children_named("ipykernel") and _new_markers(app, markers) else None
        if point == "report":
            return point if service.children_named("asciidoctor", "pandoc") else None
        return None

    if point == "random":  # anywhere from the tick's start (claims, flows, kernels, reports, records) on
        wait_until(lambda: "tick: asking" in service.stderr or not service.alive(), 180, "the tick to start", interval=0.05)
        deadline = time.monotonic() + rng.uniform(0.0, 5.0)
        while time.monotonic() < deadline and service.alive():
            time.sleep(0.02)
        if not service.alive():
            return "exited"
        if service.children_named("asciidoctor", "pandoc"):
            return "random (during a report)"
        return "random (during a kernel)" if service.children_named("ipykernel") else "random (elsewhere)"
    return str(wait_until(reached, 180, f"the service to reach {point}", interval=0.02))


def _check_no_double_success(app: Deployment, chain: Chain) -> None:
    successes = Counter(a.key for a in app.history() if a.state == "success")
    for key, count in successes.items():
        if count > 1:
            chain.duplicates.append(f"{key.reference_date}: {count} successes")


def _run_chain(root: Path, db_uri: str, backend: str, seed: int, parallel_runs: int) -> Chain:
    rng = random.Random(seed)
    chain = Chain(backend)
    started = time.monotonic()
    tmp = root / "tmp"
    tmp.mkdir(parents=True)
    app = Deployment(root, WORKFLOWS, NOTEBOOKS, db_uri=db_uri, env={"AUTOFLOW_MAX_PARALLEL_RUNS": str(parallel_runs), "TMPDIR": str(tmp)})
    points = [POINTS[i % len(POINTS)] for i in range(TRIALS_PER_CHAIN)]
    rng.shuffle(points)
    tries = 0
    while points:
        point = points[0]
        _add_date(app, chain)
        freeze = {"AUTOFLOW_TEST_FREEZE_AT": point} if point in ("claimed", "recording-end") else {}
        service = app.start(env=freeze)
        tries += 1
        try:
            where = _kill_at(point, service, app, rng)
            if where == "exited":
                chain.finished_before_kill += 1  # the tick was shorter than the random delay: try again
                if point != "random" or tries > 3 * TRIALS_PER_CHAIN:
                    chain.problems.append(f"the service ended before reaching {point} (exit {service.popen.returncode}):\n{service.stderr[-2000:]}")
                    points.pop(0)
                continue
            points.pop(0)
            left = service.kill()
            chain.kills[where.split(" (")[0]] += 1
            if where.startswith("random"):
                chain.random_landed[where] += 1
        finally:
            service.ensure_gone()
        try:
            wait_until(lambda: not still_running(left), 30, "the killed service's processes to end")
        except AssertionError:
            chain.orphans.append(f"after a kill at {point}: {describe(still_running(left))}")
            for process in still_running(left):
                process.kill()
        _check_no_double_success(app, chain)
    final = app.run(timeout=600)
    if final.popen.returncode != 0:
        chain.problems.append(f"the final tick failed (exit {final.popen.returncode}):\n{final.stderr[-3000:]}")
    chain.problems += _final_problems(app, chain)
    _check_no_double_success(app, chain)
    chain.seconds = time.monotonic() - started
    chain.problems += [f"traceback in {p.name}" for p in app.logs.iterdir() if tracebacks(p.read_text(errors="replace"))]
    # What a SIGKILL cannot clean up: kernel connection files (jupyter_client's, in TMPDIR) and
    # report workspaces (inside the outputs directory). Nothing else may be left.
    left_in_tmp = [p.name for p in tmp.iterdir()]
    chain.connection_files = sum(name.startswith("tmp") and name.endswith(".json") for name in left_in_tmp)
    chain.problems += [f"left in TMPDIR: {name}" for name in left_in_tmp if not (name.startswith("tmp") and name.endswith(".json"))]
    chain.report_workspaces = len(list((app.outputs / "reports").glob(".autoflow-report-*")))
    return chain


def _final_problems(app: Deployment, chain: Chain) -> list[str]:
    problems = []
    history = app.history()
    by_date: dict[dt.date, list[str]] = {}
    for attempt in sorted(history, key=lambda a: (a.reference_date, a.attempt)):
        by_date.setdefault(attempt.reference_date, []).append(attempt.state)
    for day in chain.dates:
        states = by_date.get(day)
        if not states:
            problems.append(f"{day}: lost (never recorded)")
        elif states[-1] != "success" or states.count("success") != 1:
            problems.append(f"{day}: attempts ended {states}")
    stuck = [a for a in history if a.state == "running"]
    if stuck:
        problems.append(f"{len(stuck)} attempt(s) still running")
    for attempt in history:
        if attempt.state != "success":
            continue
        for notebook in attempt.notebooks:
            if not Path(notebook).is_file():
                problems.append(f"{attempt.reference_date}: notebook {notebook} is missing")
        if len(attempt.reports) != 1:
            problems.append(f"{attempt.reference_date}: {len(attempt.reports)} reports recorded")
    for pdf in (app.outputs / "reports").glob("*.pdf"):
        data = pdf.read_bytes()
        if not data.startswith(b"%PDF") or b"%%EOF" not in data[-1024:]:
            problems.append(f"{pdf.name} is not a complete PDF")
    return problems


@pytest.mark.timeout(900)
def test_sigkill_anywhere_then_restart_loses_nothing_and_leaves_nothing(tmp_path: Path, postgres_database: str, figures: Figures) -> None:
    chains = [
        ("sqlite", "", SEED, 1),
        ("postgresql", postgres_url_for(postgres_database).replace("postgresql+psycopg://", "postgresql://"), SEED + 1, 2),
    ]
    with ThreadPoolExecutor(max_workers=len(chains)) as pool:
        futures = [pool.submit(_run_chain, tmp_path / backend, uri, backend, seed, parallel) for backend, uri, seed, parallel in chains]
        results = [future.result() for future in futures]
    for chain in results:
        figures.add(
            "process death",
            trials=sum(chain.kills.values()),
            runs_checked=len(chain.dates),
            duplicates=len(chain.duplicates),
            lost=sum("lost" in p for p in chain.problems),
            tracebacks=sum("traceback" in p for p in chain.problems),
            leaks=len(chain.orphans),
        )
        figures.note("process death", f"kills_{chain.backend}", {**chain.kills, **chain.random_landed})
        figures.note("process death", f"seconds_{chain.backend}", round(chain.seconds, 1))
        figures.note("process death", f"ticks that ended before their random kill ({chain.backend})", chain.finished_before_kill)
        figures.note("process death", f"stale kernel connection files in TMPDIR ({chain.backend})", chain.connection_files)
        figures.note("process death", f"report workspaces left in outputs/reports ({chain.backend})", chain.report_workspaces)
    for chain in results:
        assert not chain.duplicates, f"{chain.backend}: runs that succeeded twice: {chain.duplicates}"
        assert not chain.orphans, f"{chain.backend}: processes outlived the killed service: {chain.orphans}"
        assert not chain.problems, f"{chain.backend}:\n" + "\n".join(chain.problems)
        assert sum(chain.kills.values()) == TRIALS_PER_CHAIN, chain.kills
        assert set(chain.kills) == set(POINTS), f"{chain.backend}: not every kill point was reached: {chain.kills}"
