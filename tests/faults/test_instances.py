"""Two and three AutoFlow processes on one PostgreSQL, started together, with 30 due runs: each run executes once.

Every executed notebook writes a marker file named after its run and its kernel's pid, so the
count of executions comes from the notebooks themselves, not from AutoFlow's own record.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.databases import postgres_url_for
from tests.fake_flowapi import FakeFlowAPI, date_range
from tests.faults.conftest import Figures
from tests.faults.harness import Deployment, tracebacks

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("prefect_api_url")]

RUNS = 30
WORKFLOWS = """\
workflows:
  - name: daily
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, marker_dir: marker_dir}
available_dates_sensor:
  schedule: null
  cdr_types: [calls]
  workflows:
    - workflow_name: daily
      parameters: {marker_dir: MARKERS}
"""
NOTEBOOKS = {
    "work.ipynb": (
        "reference_date = None\nmarker_dir = None",
        ["import os, pathlib\npathlib.Path(marker_dir, f'{reference_date}.{os.getpid()}').write_text('')"],
    )
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("instances", [2, 3])
def test_instances_sharing_postgres_run_every_run_exactly_once(tmp_path: Path, postgres_database: str, instances: int, figures: Figures) -> None:
    dates = date_range(dt.date(2016, 1, 1), dt.date(2016, 1, RUNS))
    with FakeFlowAPI({"calls": dates}) as fake:
        uri = postgres_url_for(postgres_database).replace("postgresql+psycopg://", "postgresql://")
        app = Deployment(
            tmp_path, WORKFLOWS, NOTEBOOKS, db_uri=uri,
            env={"FLOWAPI_URL": fake.url, "FLOWAPI_TOKEN": fake.make_token(), "AUTOFLOW_MAX_PARALLEL_RUNS": "2"},
        )  # fmt: skip
        services = [app.start() for _ in range(instances)]
        deadline = time.monotonic() + 540
        try:
            codes = [service.wait(max(1.0, deadline - time.monotonic())) for service in services]
        except subprocess.TimeoutExpired:
            stuck = "\n\n".join(f"{service.stderr_path.name}:\n{service.stderr[-2000:]}" for service in services if service.alive())
            raise AssertionError(f"not every instance ended within 540 s:\n{stuck}") from None
        finally:
            for service in services:
                service.ensure_gone()
    logs = [service.stderr for service in services]
    executions = Counter(marker.name.split(".")[0] for marker in app.markers.iterdir())
    history = app.history()
    successes = Counter(a.reference_date.isoformat() for a in history if a.state == "success")
    owners = Counter(a.owner for a in history)
    duplicates = sum(n - 1 for n in executions.values() if n > 1) + sum(n - 1 for n in successes.values() if n > 1)
    lost = sum(1 for day in dates if executions[day.isoformat()] == 0 or successes[day.isoformat()] == 0)
    printed = sum(tracebacks(log) for log in logs)
    figures.add("instances on one PostgreSQL", trials=1, runs_checked=len(dates), duplicates=duplicates, lost=lost, tracebacks=printed)
    figures.note("instances on one PostgreSQL", f"runs per instance ({instances})", sorted(owners.values()))

    assert codes == [0] * instances, "\n\n".join(log[-2000:] for log in logs)
    assert duplicates == 0, f"executed more than once: {[d for d, n in executions.items() if n > 1]}; successes: {successes}"
    assert lost == 0, f"never executed: {[d for d in dates if not executions[d.isoformat()]]}"
    assert len(history) == RUNS and all(a.state == "success" and a.attempt == 1 for a in history)
    assert len(app.notebooks("work__")) == RUNS
    assert printed == 0
    assert len(owners) >= 2, f"the runs were not shared out: {owners}"
    claimed_elsewhere = sum(int(line.split(", ")[3].split()[0]) for log in logs for line in log.splitlines() if "tick done:" in line)
    assert claimed_elsewhere > 0, "no process ever found a run taken by another: they did not really race"
