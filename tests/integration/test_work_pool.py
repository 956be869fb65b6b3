"""Workflow runs on a Prefect work pool: the service submits, Prefect's own process workers execute.

All real and on 127.0.0.1: the session's Prefect API server, a PostgreSQL database of the test's
own, the service (``python -m autoflow``, ticking every few seconds) and ``autoflow worker``
processes, which are Prefect's ``prefect worker start --type process``. One test walks through
the life of a deployment, because every phase costs Python and kernel start-ups on 2 cores:

1. no worker yet: the service submits every due run; they wait in Prefect, and neither their
   lack of heartbeats nor the wait gets them abandoned; ``status`` and ``plan`` say the pool has
   no live worker;
2. two workers start: the runs spread over both, and the run history names each run's worker;
3. one worker is SIGKILLed (with its flow-run processes and kernels) mid-notebook, the other gets
   SIGTERM mid-notebook: the first's attempt is declared abandoned and its Prefect flow run
   cancelled, the second's is recorded ``interrupted``; both run again;
4. a third worker finishes the rest: every date executed to its end exactly once (counted from
   the notebooks' own marker files, not from AutoFlow's record), nothing left ``running``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from autoflow.errors import RunStoreError
from autoflow.store import Attempt, RunStore
from tests.databases import postgres_url_for
from tests.nbfactory import write_notebook
from tests.processes import end_tree

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DATES = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(20)]

# Marks its start and its end with files named after the date and the worker executing it
# (Prefect's worker passes its name to the flow run's process, and so to the kernel); holds,
# between the two, while a "hold-WORKER" file exists.
WORK = """\
import os, pathlib, time
marks = pathlib.Path(marker_dir)
worker = os.environ.get("PREFECT__WORKER_NAME", "none")
(marks / f"{reference_date}.start.{worker}.{os.getpid()}").touch()
while (marks / f"hold-{worker}").exists():
    time.sleep(0.2)
time.sleep(0.5)
(marks / f"{reference_date}.end.{worker}.{os.getpid()}").touch()
"""

WORKFLOWS = """\
workflows:
  - name: daily
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, marker_dir: marker_dir}
available_dates_sensor:
  schedule: "0 3 * * *"
  source:
    type: directory
    pattern: 'data/{date:%Y-%m-%d}.csv'
  workflows:
    - workflow_name: daily
      parameters: {marker_dir: MARKERS}
      date_stencil: [0]
"""


class PoolDeployment:
    """The inputs, outputs, markers and environment of one service and its workers."""

    def __init__(self, root: Path, database: str, api_url: str) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        self.markers = root / "markers"
        self.markers.mkdir(parents=True)
        write_notebook(self.inputs / "work.ipynb", WORK, parameters="reference_date = None\nmarker_dir = None")
        (self.inputs / "workflows.yml").write_text(WORKFLOWS.replace("MARKERS", str(self.markers)))
        (self.inputs / "data").mkdir()
        for day in DATES:
            (self.inputs / "data" / f"{day.isoformat()}.csv").write_text("calls\n1\n")
        self.pool = f"pool-{secrets.token_hex(4)}"
        self.api_url = api_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_", "PREFECT__"))},
            "AUTOFLOW_INPUTS_DIR": str(self.inputs),
            "AUTOFLOW_OUTPUTS_DIR": str(self.outputs),
            "AUTOFLOW_DB_URI": postgres_url_for(database),
            "AUTOFLOW_SECRETS_DIR": str(root / "no-secrets"),
            "AUTOFLOW_WORK_POOL": self.pool,
            "AUTOFLOW_MAX_PARALLEL_RUNS": "4",
            "AUTOFLOW_RUN_LEASE_SECONDS": "30",
            "AUTOFLOW_TEST_TICK_SECONDS": "3",
            "PREFECT_API_URL": api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        self.workers: dict[str, subprocess.Popen[str]] = {}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "autoflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str, log: str) -> subprocess.Popen[str]:
        out = open(self.root / log, "w")  # noqa: SIM115 - the process writes to it until it ends
        return subprocess.Popen(
            [sys.executable, "-m", "autoflow", *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip

    def start_worker(self, name: str) -> subprocess.Popen[str]:
        self.workers[name] = self.start("worker", "--name", name, "--limit", "2", log=f"worker-{name}.log")
        return self.workers[name]

    def history(self) -> list[Attempt]:
        from autoflow.settings import Settings

        with RunStore(Settings.from_env(self.env).db_url) as store:
            try:
                return store.history()
            except RunStoreError:
                return []

    def marks(self, kind: str) -> list[tuple[str, str]]:
        """(date, worker) of every start or end marker."""
        found = []
        for path in self.markers.glob(f"*.{kind}.*"):
            date, _, worker, _pid = path.name.split(".", 3)
            found.append((date, worker))
        return sorted(found)

    def flow_run_state(self, flow_run_id: str) -> str:
        with urllib.request.urlopen(f"{self.api_url}/flow_runs/{flow_run_id}", timeout=10) as response:
            return str(json.load(response)["state"]["type"])


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def pool_deployment(tmp_path: Path, postgres_database: str, prefect_api_url: str) -> Iterator[PoolDeployment]:
    app = PoolDeployment(tmp_path, postgres_database, prefect_api_url)
    try:
        yield app
    finally:
        end_tree([psutil.Process(p.pid) for p in app.workers.values() if p.poll() is None])


def _kernel_pid(app: PoolDeployment, date: str, worker: str) -> int:
    (path,) = app.markers.glob(f"{date}.start.{worker}.*")
    return int(path.name.rsplit(".", 1)[1])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _held(app: PoolDeployment, worker: str) -> list[str]:
    """Dates whose notebook started on ``worker`` and has not ended."""
    ended = {d for d, w in app.marks("end") if w == worker}
    return [d for d, w in app.marks("start") if w == worker and d not in ended]


def test_runs_execute_once_on_prefect_workers_through_kills_and_stops(pool_deployment: PoolDeployment) -> None:
    app = pool_deployment
    service = app.start(log="service.log")
    try:
        # 1. nobody to run them: submitted, waiting, not abandoned
        wait_for("20 submitted runs", lambda: sum(1 for a in app.history() if a.flow_run_id) == 20, timeout=180)
        status = app.run("status")
        assert status.returncode == 0, status.stderr
        assert f"work pool '{app.pool}': no live worker; 20 run(s) waiting for a worker" in status.stdout, status.stdout
        assert "waiting for a worker" in status.stdout.split("\n")[3]  # the table's rows say so too
        plan = app.run("plan")
        assert plan.returncode == 0, plan.stderr
        assert "no live worker" in plan.stdout and "20 run(s) waiting" in plan.stdout, plan.stdout
        time.sleep(35)  # longer than the 30 s lease: the service keeps the queued runs alive
        assert [a.state for a in app.history()] == ["running"] * 20
        assert not app.marks("start")

        # 2. two workers: the runs spread over both
        app.start_worker("wa")
        app.start_worker("wb")

        def successes_on(worker: str) -> int:
            return sum(1 for a in app.history() if a.state == "success" and f"worker {worker} on" in (a.executor or ""))

        wait_for("3 runs done on each worker", lambda: successes_on("wa") >= 3 and successes_on("wb") >= 3)

        # 3. each worker stopped in the middle of a notebook: one SIGKILLed, one SIGTERMed
        (app.markers / "hold-wa").touch()
        (app.markers / "hold-wb").touch()
        wait_for("a notebook held on each worker", lambda: bool(_held(app, "wa")) and bool(_held(app, "wb")))
        killed_date, stopped_date = _held(app, "wa")[0], _held(app, "wb")[0]
        worker_a = psutil.Process(app.workers["wa"].pid)
        everything = [worker_a, *worker_a.children(recursive=True)]  # the flow-run processes and their kernels
        for process in everything:
            process.kill()
        app.workers["wb"].send_signal(signal.SIGTERM)

        def attempt_of(date: str, worker: str) -> Attempt:
            return next(a for a in app.history() if a.reference_date.isoformat() == date and f"worker {worker} on" in (a.executor or ""))

        wait_for("the SIGTERMed worker's attempt recorded", lambda: attempt_of(stopped_date, "wb").state == "failed", timeout=120)
        stopped = attempt_of(stopped_date, "wb")
        assert stopped.error is not None and stopped.error.startswith("interrupted"), stopped.error
        assert app.workers["wb"].wait(timeout=120) is not None  # its flow run stopped its notebook: nothing holds it
        assert not _alive(_kernel_pid(app, stopped_date, "wb")), "the interrupted notebook's kernel was left running"
        wait_for("the killed worker's attempt declared abandoned", lambda: attempt_of(killed_date, "wa").state == "failed", timeout=120)
        killed = attempt_of(killed_date, "wa")
        assert killed.error is not None and killed.error.startswith("abandoned"), killed.error
        wait_for("its Prefect flow run cancelled", lambda: app.flow_run_state(killed.flow_run_id or "") == "CANCELLED", timeout=60)
        (app.markers / "hold-wa").unlink()
        (app.markers / "hold-wb").unlink()

        # 4. a third worker: a run it executes is cancelled from another process, then rerun
        (app.markers / "hold-wc").touch()
        app.start_worker("wc")
        wait_for("a notebook held on the third worker", lambda: bool(_held(app, "wc")), timeout=180)
        cancelled_date = _held(app, "wc")[0]
        target = next(a for a in app.history() if a.reference_date.isoformat() == cancelled_date and a.state == "running")
        asked = time.monotonic()
        cancel = app.run("cancel", str(target.id))
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert time.monotonic() - asked < 10 + 5, "not stopped within 10 s (plus the command's own start)"
        cancelled = attempt_of(cancelled_date, "wc")
        assert cancelled.state == "cancelled" and "cancelled by" in (cancelled.error or ""), cancelled
        assert not _alive(_kernel_pid(app, cancelled_date, "wc")), "the cancelled notebook's kernel was left running"
        wait_for("its Prefect flow run cancelled", lambda: app.flow_run_state(cancelled.flow_run_id or "") == "CANCELLED", timeout=60)
        (app.markers / "hold-wc").unlink()
        rerun = app.run("rerun", str(cancelled.id), timeout=600)  # through the pool: the third worker runs it
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        wait_for("every date succeeded", lambda: {a.reference_date for a in app.history() if a.state == "success"} == set(DATES), timeout=300)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=120)

    history = app.history()
    assert not [a for a in history if a.state == "running"]
    ends = app.marks("end")
    assert sorted(d for d, _ in ends) == [d.isoformat() for d in DATES], "each date executed to its end exactly once"
    starts = [d for d, _ in app.marks("start")]
    assert starts.count(killed_date) == 2 and starts.count(stopped_date) == 2  # stopped midway, then again
    assert starts.count(cancelled_date) == 2 and by_date_of(history, cancelled_date) == ["cancelled", "success"]
    # the report site, rebuilt by the workers' flow runs after each run, shows every date succeeded
    page = (app.outputs / "site" / "index.html").read_text()
    assert all(f'>{day.isoformat()}</a> <span class="word">success</span>' in page for day in DATES), page
    by_date = {a.reference_date.isoformat(): a for a in history if a.state == "success"}
    for date, worker in ends:
        assert f"worker {worker} on" in (by_date[date].executor or ""), (date, worker, by_date[date].executor)
    assert {w for _, w in ends} >= {"wa", "wb", "wc"}
    assert by_date[killed_date].attempt == 2 and by_date[stopped_date].attempt == 2


def by_date_of(history: list[Attempt], date: str) -> list[str]:
    return [a.state for a in sorted(history, key=lambda a: a.attempt) if a.reference_date.isoformat() == date]
