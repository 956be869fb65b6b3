"""Outages while the service runs on a schedule: it survives, says so once per failed tick, and catches up.

The services tick every few seconds (AUTOFLOW_TEST_TICK_SECONDS; their workflows.yml says
'* * * * *'). All scenarios run side by side, each with its own service:

- FlowAPI answering 500, 401, garbage instead of JSON, hanging past the client's timeout, or down;
- PostgreSQL (a cluster the suite starts itself, password auth) stopped across a tick, then
  stopped again while a run's notebook is executing, so that the run's end cannot be written
  when the notebook finishes: the end must be recorded once the database is back, and the
  notebook never executed a second time.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fake_flowapi import FakeFlowAPI
from tests.faults.conftest import Figures
from tests.faults.harness import RECORD, Deployment, OwnPostgres, Service, tracebacks, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

D1, D2 = dt.date(2016, 1, 1), dt.date(2016, 1, 2)
WORKFLOWS = """\
workflows:
  - name: daily
    notebooks:
      work:
        filename: work.ipynb
        parameters: {reference_date: reference_date, marker_dir: marker_dir}
available_dates_sensor:
  schedule: '* * * * *'
  cdr_types: [calls]
  workflows:
    - workflow_name: daily
      parameters: {marker_dir: MARKERS}
"""
#: the notebook marks that it started, then waits while the file "hold" exists (at most 2 minutes)
NOTEBOOKS = {
    "work.ipynb": (
        "reference_date = None\nmarker_dir = None",
        [
            "import pathlib, time\nmarkers = pathlib.Path(marker_dir)\n(markers / f'{reference_date}.started').write_text('')\n"
            "deadline = time.time() + 120\nwhile (markers / 'hold').exists() and time.time() < deadline:\n    time.sleep(0.1)"
        ],
    )
}
#: what the one line of a failed tick must say, per FlowAPI failure
EXPECTED = {
    "500": "failed to answer available_dates (500",
    "401": "refused the token (401",
    "garbage": "answered available_dates with invalid JSON",
    "hang": "did not answer available_dates within",
    "down": "could not be reached",
}
TICK_SECONDS = "4"
WAIT = 200.0  # seconds: starting six services at once is slow on two cores


@dataclass
class Outcome:
    name: str
    problems: list[str] = field(default_factory=list)
    failed_ticks: int = 0
    runs_checked: int = 0
    duplicates: int = 0
    lost: int = 0
    tracebacks: int = 0


def _tick_failures(service: Service) -> list[str]:
    return [line for line in service.stderr.splitlines() if " ERROR " in line[:30]]


def _check_log(service: Service, outcome: Outcome, expected: str, secrets: tuple[str, ...] = ()) -> None:
    """One ERROR line per failed tick, each a one-line 'tick failed: ...' saying ``expected``; nothing else."""
    text = service.stderr
    errors = _tick_failures(service)
    outcome.failed_ticks = len(errors)
    if not errors:
        outcome.problems.append("no tick failed")
    for line in errors:
        if "tick failed: " not in line or expected not in line:
            outcome.problems.append(f"unexpected error line: {line}")
    strays = [line for line in text.splitlines() if line.strip() and not RECORD.match(line)]
    if strays:
        outcome.problems.append(f"lines that are not one-line log records: {strays[:5]}")
    if tracebacks(text):
        outcome.tracebacks += 1
        outcome.problems.append("a traceback was printed")
    for secret in secrets:
        if secret in text:
            outcome.problems.append("a secret was logged")


def _check_runs(app: Deployment, outcome: Outcome, dates: list[dt.date]) -> None:
    """Every date ran once, successfully, in one attempt, with one executed notebook."""
    history = app.history()
    outcome.runs_checked += len(dates)
    for day in dates:
        attempts = [(a.attempt, a.state) for a in history if a.reference_date == day]
        executed = app.notebooks(f"work__daily__{day.isoformat()}")
        if not attempts:
            outcome.lost += 1
            outcome.problems.append(f"{day}: never run")
        elif attempts != [(1, "success")] or len(executed) != 1:
            outcome.duplicates += len(executed) > 1
            outcome.problems.append(f"{day}: attempts {attempts}, {len(executed)} executed notebook(s)")
    if any(a.state == "running" for a in history):
        outcome.problems.append("an attempt is still running")


def _stop(service: Service, outcome: Outcome) -> None:
    if service.alive():
        service.popen.send_signal(signal.SIGTERM)
        try:
            code = service.wait(120)
        except Exception:  # noqa: BLE001 - reported below
            code = None
        if code != 0:
            outcome.problems.append(f"SIGTERM: exit {code}")
    else:
        outcome.problems.append(f"the service died (exit {service.popen.returncode})")
    service.ensure_gone()


def _all_succeeded(app: Deployment, dates: list[dt.date]) -> Callable[[], bool]:
    def check() -> bool:
        done = {a.reference_date for a in app.history() if a.state == "success"}
        return set(dates) <= done

    return check


def flowapi_outage(root: Path, mode: str) -> Outcome:
    outcome = Outcome(f"FlowAPI {mode}")
    # port 0: bound at once (a port picked beforehand could be taken meanwhile by another
    # service's Prefect server); stop() then start() serve the same port again
    fake = FakeFlowAPI({"calls": [D1, D2]}, hang_seconds=120).start()
    token = fake.make_token()
    app = Deployment(root, WORKFLOWS, NOTEBOOKS, env={"FLOWAPI_URL": fake.url, "FLOWAPI_TOKEN": token, "AUTOFLOW_TEST_TICK_SECONDS": TICK_SECONDS})
    if mode == "down":
        fake.stop()
    else:
        fake.mode = mode  # type: ignore[assignment]
    service = app.start()
    try:
        wait_until(lambda: _tick_failures(service) or not service.alive(), WAIT, f"a failed tick ({mode})")
        if not service.alive():
            outcome.problems.append(f"the service died after a failed tick:\n{service.stderr[-2000:]}")
            return outcome
        if mode == "down":
            fake.start()
        fake.mode = "ok"
        wait_until(lambda: _all_succeeded(app, [D1, D2])() or not service.alive(), WAIT, f"the catch-up tick ({mode})")
        _check_runs(app, outcome, [D1, D2])
    finally:
        _stop(service, outcome)
        fake.stop()
    _check_log(service, outcome, EXPECTED[mode], secrets=(token,))
    return outcome


def postgres_outage(root: Path, server: OwnPostgres) -> Outcome:
    """PostgreSQL down across a tick, then down while a run's notebook finishes."""
    outcome = Outcome("PostgreSQL stopped and started")
    password = "pw-outage-" + root.name
    server.create_database("outage", "autoflow_outage", password)
    fake = FakeFlowAPI({"calls": []}).start()
    app = Deployment(
        root, WORKFLOWS, NOTEBOOKS, db_uri=server.url("outage", "autoflow_outage"),
        env={"FLOWAPI_URL": fake.url, "FLOWAPI_TOKEN": fake.make_token(), "AUTOFLOW_DB_PASSWORD": password, "AUTOFLOW_TEST_TICK_SECONDS": TICK_SECONDS},
    )  # fmt: skip
    hold = app.markers / "hold"
    service = app.start()
    try:
        wait_until(lambda: "next tick at" in service.stderr or not service.alive(), WAIT, "the service to start")
        server.stop()
        wait_until(lambda: _tick_failures(service) or not service.alive(), WAIT, "a tick to fail while PostgreSQL is down")
        fake.dates["calls"].append(D1)  # new data arrives while the database is away
        hold.write_text("")
        server.start()
        wait_until(lambda: (app.markers / f"{D1}.started").exists() or not service.alive(), WAIT, "the catch-up run's notebook")
        server.stop()  # the notebook is running: its end will find the database away
        hold.unlink()
        wait_until(lambda: "cannot record the end of run attempt" in service.stderr or not service.alive(), WAIT, "the run's end to be retried")
        server.start()
        wait_until(lambda: _all_succeeded(app, [D1])() or not service.alive(), WAIT, "the run's end to be recorded")
        _check_runs(app, outcome, [D1])
        if "recorded the end of run attempt" not in service.stderr:
            outcome.problems.append("no line says the run's end was recorded after the outage")
    finally:
        if not server.running():
            server.start()
        _stop(service, outcome)
        fake.stop()
    _check_log(service, outcome, "cannot reach the run history database", secrets=(password,))
    return outcome


@pytest.mark.timeout(600)
def test_outages_are_survived_reported_once_per_tick_and_caught_up(tmp_path: Path, running_own_postgres: OwnPostgres, figures: Figures) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(EXPECTED) + 1) as pool:
        futures = [pool.submit(postgres_outage, tmp_path / "postgres", running_own_postgres)]
        futures += [pool.submit(flowapi_outage, tmp_path / f"flowapi-{mode}", mode) for mode in EXPECTED]
        outcomes = [future.result() for future in futures]
    for outcome in outcomes:
        figures.add(
            "outages", trials=1, runs_checked=outcome.runs_checked, duplicates=outcome.duplicates,
            lost=outcome.lost, tracebacks=outcome.tracebacks,
        )  # fmt: skip
        figures.note("outages", f"failed_ticks {outcome.name}", outcome.failed_ticks)
    figures.note("outages", "seconds", round(time.monotonic() - started, 1))
    problems = [f"{o.name}: {p}" for o in outcomes for p in o.problems]
    assert not problems, "\n".join(problems)
