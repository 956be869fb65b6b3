"""The service end to end: `python -m autoflow` against a fake FlowAPI, real kernels, real databases."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import scrapbook as sb

from autoflow.errors import RunStoreError
from autoflow.store import Attempt, RunStore
from tests.databases import postgres_url_for
from tests.fake_flowapi import FakeFlowAPI, date_range
from tests.nbfactory import write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

D = dt.date
TOKEN_SUB = "autoflow-service-test"

WORK = """\
import time, pathlib
import scrapbook as sb
flags = pathlib.Path(flag_dir)
if (flags / f"{reference_date}.slow").exists():
    time.sleep(float((flags / f"{reference_date}.slow").read_text() or 60))
if (flags / f"{reference_date}.fail").exists():
    raise RuntimeError(f"no good data for {reference_date}")
sb.glue("date_ranges", date_ranges)
"""

WORKFLOWS = """\
workflows:
  - name: daily
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, date_ranges: date_ranges, flag_dir: flag_dir}
available_dates_sensor:
  schedule: SCHEDULE
  cdr_types: [calls]
  workflows:
    - workflow_name: daily
      parameters: {flag_dir: FLAGS}
      earliest_date: 2016-01-02
      date_stencil: [[-1, 0]]
"""


class Deployment:
    """An inputs directory, an outputs directory, a database and a FlowAPI, run as a user would."""

    def __init__(self, root: Path, db_uri: str, flowapi: FakeFlowAPI, *, schedule: str = "null", extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        self.flags = root / "flags"
        self.flags.mkdir(parents=True, exist_ok=True)
        self.flowapi = flowapi
        self.db_uri = db_uri
        write_notebook(self.inputs / "work.ipynb", WORK, parameters="reference_date = None\ndate_ranges = None\nflag_dir = None")
        (self.inputs / "workflows.yml").write_text(WORKFLOWS.replace("SCHEDULE", schedule).replace("FLAGS", str(self.flags)))
        self.token = flowapi.make_token(sub=TOKEN_SUB)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_"))},
            "AUTOFLOW_INPUTS_DIR": str(self.inputs),
            "AUTOFLOW_OUTPUTS_DIR": str(self.outputs),
            "AUTOFLOW_DB_URI": db_uri,
            "AUTOFLOW_SECRETS_DIR": str(root / "no-secrets"),
            "FLOWAPI_URL": flowapi.url,
            "FLOWAPI_TOKEN": self.token,
            "AUTOFLOW_MAX_PARALLEL_RUNS": "2",
            **(extra_env or {}),
        }

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "autoflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "autoflow", *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def store(self) -> RunStore:
        from autoflow.settings import Settings

        settings = Settings.from_env(self.env)
        return RunStore(settings.db_url)

    def history(self) -> list[Attempt]:
        """The run history; empty until the service has created the schema."""
        with self.store() as store:
            try:
                return store.history()
            except RunStoreError:
                return []

    def executed(self) -> list[Path]:
        return sorted((self.outputs / "notebooks").glob("work__*.ipynb"))

    def runs_by_date(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for attempt in sorted(self.history(), key=lambda a: (a.reference_date, a.attempt)):
            found.setdefault(attempt.reference_date.isoformat(), []).append(attempt.state)
        return found


@pytest.fixture
def flowapi() -> Iterator[FakeFlowAPI]:
    dates = {"calls": [*date_range(D(2016, 1, 1), D(2016, 1, 3)), D(2016, 1, 5), D(2016, 1, 6)], "sms": [D(2016, 1, 4)]}
    with FakeFlowAPI(dates) as fake:
        yield fake


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return ""  # the default: a SQLite file in the outputs directory
    database = request.getfixturevalue("postgres_database")
    return postgres_url_for(database, password="{}").replace("postgresql+psycopg://", "postgresql://")


def test_one_shot_runs_exactly_the_due_dates_then_catches_up(tmp_path: Path, flowapi: FakeFlowAPI, db_uri: str) -> None:
    app = Deployment(tmp_path, db_uri, flowapi, extra_env={"AUTOFLOW_DB_PASSWORD": "pw-not-needed-by-trust"})
    config = app.inputs / "workflows.yml"  # a failed run is retried by the next run of the service
    config.write_text(config.read_text().replace("  cdr_types: [calls]\n", "  cdr_types: [calls]\n  retry_after: 0\n"))

    first = app.run()
    assert first.returncode == 0, first.stderr
    # 01-01 is before earliest_date; 01-05 needs 01-04, which is only an sms date (cdr_types: [calls])
    assert app.runs_by_date() == {"2016-01-02": ["success"], "2016-01-03": ["success"], "2016-01-06": ["success"]}
    ranges = {json.loads(Path(p).read_text())["metadata"]["autoflow"]["reference_date"]: sb.read_notebook(str(p)).scraps["date_ranges"].data for p in app.executed()}
    assert ranges["2016-01-03"] == [["2016-01-02", "2016-01-03"]]
    assert "due: daily for 2016-01-02" in first.stderr and "waiting for data: 2016-01-04 not available" not in first.stderr
    if not db_uri:
        assert (app.outputs / "autoflow.db").is_file()

    again = app.run()
    assert again.returncode == 0, again.stderr
    assert len(app.executed()) == 3
    assert len(app.history()) == 3

    flowapi.dates["calls"].append(D(2016, 1, 4))
    (app.flags / "2016-01-07.fail").write_text("")
    flowapi.dates["calls"].append(D(2016, 1, 7))
    failing = app.run()
    assert failing.returncode == 1
    assert app.runs_by_date()["2016-01-04"] == ["success"] and app.runs_by_date()["2016-01-05"] == ["success"]
    assert app.runs_by_date()["2016-01-07"] == ["failed"]
    assert "no good data for 2016-01-07" in failing.stderr
    assert "Traceback" not in failing.stderr

    (app.flags / "2016-01-07.fail").unlink()
    retried = app.run()
    assert retried.returncode == 0, retried.stderr
    assert app.runs_by_date()["2016-01-07"] == ["failed", "success"]
    assert len(app.executed()) == 7  # 3 + 2 + the failed copy + the retry


def test_status_and_plan_tell_the_truth(tmp_path: Path, flowapi: FakeFlowAPI) -> None:
    app = Deployment(tmp_path, "", flowapi)
    fresh = app.run("status", "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout) == []
    planned = app.run("plan", "--json")
    assert planned.returncode == 0, planned.stderr
    due = json.loads(planned.stdout)["due"]
    assert [r["reference_date"] for r in due] == ["2016-01-02", "2016-01-03", "2016-01-06"]
    assert app.history() == [] and not app.executed()  # plan claims and runs nothing

    (app.flags / "2016-01-03.fail").write_text("")
    assert app.run().returncode == 1
    status = json.loads(app.run("status", "--json").stdout)
    assert {(r["reference_date"], r["state"]) for r in status} == {("2016-01-02", "success"), ("2016-01-03", "failed"), ("2016-01-06", "success")}
    failed = next(r for r in status if r["state"] == "failed")
    assert "no good data" in failed["error"] and failed["notebooks"] and failed["parameters"] == {"flag_dir": str(app.flags)}
    assert set(failed) >= {"workflow", "reference_date", "state", "parameters", "attempt", "started_at", "finished_at", "error", "notebooks", "reports"}
    only_failed = json.loads(app.run("status", "--json", "--state", "failed").stdout)
    assert [r["reference_date"] for r in only_failed] == ["2016-01-03"]
    table = app.run("status")
    assert table.returncode == 0 and "2016-01-03" in table.stdout and "failed" in table.stdout
    replan = app.run("plan")
    # the failed date waits retry_after (10 min by default) before its second attempt
    assert "0 run(s) due" in replan.stdout and "1 × waiting for retry" in replan.stdout


@pytest.mark.parametrize("mode", ["401", "500", "garbage", "down"])
def test_flowapi_outage_is_one_clear_line(tmp_path: Path, flowapi: FakeFlowAPI, db_uri: str, mode: str) -> None:
    app = Deployment(tmp_path, db_uri, flowapi, extra_env={"AUTOFLOW_DB_PASSWORD": "pw"})
    if mode == "down":
        flowapi.stop()
    else:
        flowapi.mode = mode  # type: ignore[assignment]
    result = app.run()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("autoflow: error:")]
    assert len(errors) == 1 and "FlowAPI" in errors[0]
    assert app.token not in result.stderr + result.stdout
    assert app.history() == []  # nothing was claimed


@pytest.mark.postgres
def test_two_processes_on_one_postgres_run_everything_once(tmp_path: Path, postgres_database: str) -> None:
    dates = {"calls": date_range(D(2016, 1, 1), D(2016, 1, 9))}
    with FakeFlowAPI(dates) as fake:
        uri = postgres_url_for(postgres_database)
        app = Deployment(tmp_path, uri, fake)
        procs = [app.start() for _ in range(2)]
        outputs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
    history = app.history()
    assert sorted(a.reference_date for a in history) == date_range(D(2016, 1, 2), D(2016, 1, 9))
    assert all(a.state == "success" and a.attempt == 1 for a in history)
    assert len(app.executed()) == 8
    owners = {a.owner for a in history}
    assert len(owners) == 2, "both processes should have taken some of the runs"


def _wait_for(predicate, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("timed out waiting")


def _kernels() -> set[int]:
    """pids of running ipykernel processes."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ipykernel" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def test_sigkill_mid_run_then_restart_completes_it_once(tmp_path: Path, flowapi: FakeFlowAPI, db_uri: str) -> None:
    app = Deployment(tmp_path, db_uri, flowapi, extra_env={"AUTOFLOW_MAX_PARALLEL_RUNS": "1", "AUTOFLOW_DB_PASSWORD": "pw"})
    (app.flags / "2016-01-02.slow").write_text("120")
    kernels_before = _kernels()
    service = app.start()
    _wait_for(lambda: (app.outputs / "logs").exists() and any(a.state == "running" for a in app.history()))
    _wait_for(lambda: bool(_kernels() - kernels_before))
    service.kill()
    service.communicate(timeout=30)
    assert [a.state for a in app.history()] == ["running"]
    (app.flags / "2016-01-02.slow").unlink()
    _wait_for(lambda: not (_kernels() - kernels_before), timeout=20)  # the orphaned kernel ends itself

    restarted = app.run()
    assert restarted.returncode == 0, restarted.stderr
    by_date = app.runs_by_date()
    assert by_date["2016-01-02"] == ["failed", "success"]  # the dead owner's attempt, then the re-run
    assert all(states[-1] == "success" for states in by_date.values())
    abandoned = next(a for a in app.history() if a.state == "failed")
    assert abandoned.error is not None and abandoned.error.startswith("abandoned")
    assert not any(a.state == "running" for a in app.history())


def test_sigterm_lets_the_running_run_finish(tmp_path: Path, flowapi: FakeFlowAPI) -> None:
    app = Deployment(tmp_path, "", flowapi, schedule="'* * * * *'", extra_env={"AUTOFLOW_MAX_PARALLEL_RUNS": "1", "AUTOFLOW_STOP_GRACE_SECONDS": "120"})
    (app.flags / "2016-01-02.slow").write_text("4")
    service = app.start()
    _wait_for(lambda: (app.outputs / "autoflow.db").exists() and any(a.state == "running" for a in app.history()), timeout=180)
    health = app.run("health")
    assert health.returncode == 0 and "(ticking)" in health.stdout, health.stdout + health.stderr
    service.send_signal(signal.SIGTERM)
    out, err = service.communicate(timeout=180)
    assert service.returncode == 0, err
    assert not list((app.outputs / ".autoflow").glob("heartbeat-*.json"))  # removed on a clean stop
    health = app.run("health")
    assert health.returncode == 1 and health.stdout.startswith("unhealthy: no AutoFlow service is running"), health.stdout
    history = app.history()
    assert [a.state for a in history] == ["success"]  # 01-02 finished; no new run was started
    assert not any(a.state == "running" for a in history)
    assert "SIGTERM received" in err


def test_sigterm_past_the_grace_period_marks_the_run_interrupted(tmp_path: Path, flowapi: FakeFlowAPI) -> None:
    app = Deployment(tmp_path, "", flowapi, extra_env={"AUTOFLOW_MAX_PARALLEL_RUNS": "1", "AUTOFLOW_STOP_GRACE_SECONDS": "1"})
    (app.flags / "2016-01-02.slow").write_text("300")
    kernels_before = _kernels()
    service = app.start()
    _wait_for(lambda: bool(app.executed()), timeout=180)
    service.send_signal(signal.SIGTERM)
    service.communicate(timeout=60)
    assert service.returncode == 0
    assert not list((app.outputs / ".autoflow").glob("heartbeat-*.json"))  # removed when the grace period ends too
    (attempt,) = app.history()
    assert attempt.state == "failed" and attempt.error is not None and "interrupted" in attempt.error
    _wait_for(lambda: not (_kernels() - kernels_before), timeout=20)


def test_the_token_never_leaks(tmp_path: Path, flowapi: FakeFlowAPI) -> None:
    app = Deployment(tmp_path, "", flowapi, extra_env={"AUTOFLOW_LOG_LEVEL": "DEBUG"})
    (app.flags / "2016-01-03.fail").write_text("")
    result = app.run()
    assert result.returncode == 1
    status = app.run("status", "--json")
    secret_parts = [app.token, app.token.split(".")[-1]]
    for text in (result.stdout, result.stderr, status.stdout, status.stderr):
        assert not any(part in text for part in secret_parts)
    for path in app.outputs.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(part.encode() in data for part in secret_parts), path
    assert "DEBUG" in result.stderr  # the debug log really was on


def _prefect(api_url: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    import urllib.request

    request = urllib.request.Request(f"{api_url}/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        found: list[dict[str, object]] = json.loads(response.read())
        return found


def test_runs_tasks_and_logs_are_in_the_prefect_server(tmp_path: Path, flowapi: FakeFlowAPI, prefect_api_url: str) -> None:
    app = Deployment(tmp_path, "", flowapi)
    (app.flags / "2016-01-03.fail").write_text("")
    assert app.run().returncode == 1
    attempts = {a.reference_date.isoformat(): a for a in app.history()}
    assert set(attempts) == {"2016-01-02", "2016-01-03", "2016-01-06"} and all(a.flow_run_id for a in attempts.values())
    ids = [str(a.flow_run_id) for a in attempts.values()]
    runs = {r["id"]: r for r in _prefect(prefect_api_url, "flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})}
    assert set(runs) == set(ids)
    for day, attempt in attempts.items():
        run = runs[str(attempt.flow_run_id)]
        assert run["name"] == f"daily-{day}"
        assert run["parent_task_run_id"] is None  # a top-level flow run, not a subflow of the tick
        assert run["state_type"] == ("FAILED" if day == "2016-01-03" else "COMPLETED")
        tasks = _prefect(prefect_api_url, "task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
        assert [t["name"] for t in tasks] == ["work"] and tasks[0]["state_type"] == run["state_type"]
        logs = _prefect(prefect_api_url, "logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
        assert any("notebook work" in str(line["message"]) for line in logs), logs
    ticks = _prefect(prefect_api_url, "flows/filter", {"flows": {"name": {"any_": ["available-dates-sensor", "workflow-run"]}}})
    assert {f["name"] for f in ticks} == {"available-dates-sensor", "workflow-run"}
