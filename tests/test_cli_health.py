"""``autoflow health``: heartbeats, and the fallback to a live service process."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autoflow import heartbeat, run_bounds
from autoflow.cli import health
from autoflow.cli.app import Abort, Application
from autoflow.settings import Settings
from autoflow.spec.models import AutoFlowConfig, NotebookSpec, OutputSpec, SensorSpec, WorkflowSpec
from tests.configs import VALID, make_inputs

FAKE_SERVICE = """\
import os, pathlib, sys, time
pathlib.Path(os.environ["READY_FILE"]).write_text("ready")
time.sleep(120)
"""


def run_health(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("AUTOFLOW_OUTPUTS_DIR", str(outputs))
    parser = argparse.ArgumentParser()
    health.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["health", *argv])
    try:
        code = health.run(Application(), args)
    except Abort as abort:
        code = abort.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


def rewrite(path: Path, **changes: object) -> None:
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_fresh_heartbeat_is_healthy(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = heartbeat.write_heartbeat(outputs, state="waiting", next_tick=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    assert path == outputs / ".autoflow" / path.name and path.name.startswith("heartbeat-")
    record = json.loads(path.read_text())
    assert record["pid"] == os.getpid() and record["state"] == "waiting" and record["next_tick"].startswith("2030-01-01T00:00:00")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 0, out
    assert out.startswith("healthy: heartbeat") and f"pid {os.getpid()}" in out


def test_stale_heartbeat_is_unhealthy(outputs: Path) -> None:
    path = heartbeat.write_heartbeat(outputs, state="ticking")
    written = dt.datetime.fromisoformat(json.loads(path.read_text())["written_at"])
    healthy, why = health.check(outputs, max_age=60, now=written + dt.timedelta(seconds=61))
    assert not healthy and "61 s old" in why and "stuck" in why
    healthy, why = health.check(outputs, max_age=60, now=written + dt.timedelta(seconds=59))
    assert healthy, why


def test_max_age_option(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = heartbeat.write_heartbeat(outputs, state="waiting")
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=300)
    rewrite(path, written_at=old.isoformat())
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1 and out.startswith("unhealthy:") and "stuck" in out
    code, out = run_health(outputs, monkeypatch, capsys, "--max-age", "3600")
    assert code == 0, out
    code, out = run_health(outputs, monkeypatch, capsys, "--max-age", "0")
    assert code == 2 and "--max-age" in out


def test_heartbeat_of_a_dead_process_is_unhealthy(outputs: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    path = heartbeat.write_heartbeat(outputs, state="waiting")
    rewrite(path, pid=int(finished.stdout))
    healthy, why = health.check(outputs)
    assert not healthy and f"pid {int(finished.stdout)}" in why and "not running" in why


def test_unreadable_heartbeat_is_unhealthy(outputs: Path) -> None:
    path = heartbeat.heartbeat_path(outputs)
    path.parent.mkdir()
    path.write_text('{"pid": 1, "written_')
    healthy, why = health.check(outputs)
    assert not healthy and "cannot read the heartbeat" in why


def test_another_hosts_heartbeat_does_not_count(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    other = heartbeat.heartbeat_path(outputs, host="another/host")
    assert other.name == "heartbeat-another_host.json" and other != heartbeat.heartbeat_path(outputs)
    other.parent.mkdir()
    other.write_text(json.dumps({"pid": os.getpid(), "written_at": dt.datetime.now(dt.timezone.utc).isoformat()}))
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1 and "no AutoFlow service is running" in out


@pytest.mark.parametrize(
    ("cmdline", "arguments", "service"),
    [
        (["python", "-m", "autoflow"], [], True),
        (["/venv/bin/python", "-m", "autoflow", "run"], ["run"], True),
        (["python", "-m", "autoflow", "--inputs", "run", "status"], ["--inputs", "run", "status"], False),
        (["python", "-m", "autoflow", "--inputs=/x", "run"], ["--inputs=/x", "run"], True),
        (["python3", "/venv/bin/autoflow", "trigger", "wf", "--date", "2016-01-01"], ["trigger", "wf", "--date", "2016-01-01"], False),
        (["/venv/bin/autoflow"], [], True),
        (["python", "-m", "autoflow", "health"], ["health"], False),
        (["python", "-m", "pytest", "autoflow"], None, False),
        (["tini", "--", "python", "-m", "autoflowx"], None, False),
    ],
)
def test_recognises_service_command_lines(cmdline: list[str], arguments: list[str] | None, service: bool) -> None:
    assert health.service_arguments(cmdline) == arguments
    assert (arguments is not None and health.is_service(arguments)) is service


@pytest.fixture
def fake_service(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """A live process whose command line is ``python -m autoflow ARGS`` (a stand-in package)."""
    package = tmp_path / "fake" / "autoflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SERVICE)
    processes: list[subprocess.Popen[bytes]] = []

    def start(outputs: Path, *args: str) -> None:
        ready = tmp_path / f"ready-{len(processes)}"
        env = {**os.environ, "AUTOFLOW_OUTPUTS_DIR": str(outputs), "READY_FILE": str(ready)}
        processes.append(subprocess.Popen([sys.executable, "-m", "autoflow", *args], cwd=package.parent, env=env))
        deadline = time.monotonic() + 60
        while not ready.exists() and processes[-1].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the stand-in service did not start"

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_running_service_counts_until_the_first_heartbeat(
    tmp_path: Path, fake_service: Callable[..., None], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, theirs, status_only = tmp_path / "ours", tmp_path / "theirs", tmp_path / "status-only"
    for path in (ours, theirs, status_only):
        path.mkdir()
    fake_service(theirs, "run")
    fake_service(status_only, "status")
    code, out = run_health(ours, monkeypatch, capsys)
    assert code == 1 and "no AutoFlow service is running" in out
    code, out = run_health(status_only, monkeypatch, capsys)
    assert code == 1, "a non-service autoflow command is not the service"
    fake_service(ours)
    code, out = run_health(ours, monkeypatch, capsys)
    assert code == 0 and "is running" in out and "no heartbeat written yet" in out


def test_writer_keeps_the_heartbeat_fresh_and_removes_it_on_stop(outputs: Path) -> None:
    writer = heartbeat.HeartbeatWriter(outputs, interval=0.05).start()
    path = heartbeat.heartbeat_path(outputs)
    try:
        first = json.loads(path.read_text())
        assert first["pid"] == os.getpid() and first["state"] == "waiting"
        deadline = time.monotonic() + 10
        while json.loads(path.read_text())["written_at"] == first["written_at"]:
            assert time.monotonic() < deadline, "the heartbeat was never rewritten"
            time.sleep(0.02)
        when = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
        writer.update("ticking", when)
        record = json.loads(path.read_text())
        assert record["state"] == "ticking" and record["next_tick"] == when.isoformat()
        assert health.check(outputs)[0]
    finally:
        writer.stop()
    assert not path.exists()
    writer.write()  # after stop: nothing is written again
    assert not path.exists()


def test_writer_leaves_another_processes_heartbeat(outputs: Path) -> None:
    writer = heartbeat.HeartbeatWriter(outputs, interval=60)
    path = heartbeat.write_heartbeat(outputs, state="waiting")
    rewrite(path, pid=os.getpid() + 1)
    writer.stop()
    assert path.exists()


def test_health_is_a_command(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from autoflow.cli.main import main

    monkeypatch.setenv("AUTOFLOW_OUTPUTS_DIR", str(outputs))
    heartbeat.write_heartbeat(outputs, state="waiting")
    assert main(["health"]) == 0
    assert capsys.readouterr().out.startswith("healthy: heartbeat")


# -- a tick that has been busy longer than the longest allowed run -------------------------------


def notebook(label: str, *, timeout: float | None = None, retries: int = 0, report: bool = False) -> NotebookSpec:
    return NotebookSpec(label, f"{label}.ipynb", Path(f"/in/{label}.ipynb"), timeout=timeout, retries=retries, output=OutputSpec() if report else None)


def test_longest_allowed_run_adds_up_the_notebooks_of_the_longest_workflow() -> None:
    settings = Settings(notebook_timeout=3600, kernel_start_timeout=60)
    short = WorkflowSpec("short", {"a": notebook("a", timeout=60)})
    long = WorkflowSpec("long", {"a": notebook("a"), "b": notebook("b", timeout=600, retries=2, report=True)})
    config = AutoFlowConfig(Path("/in"), {"short": short, "long": long}, SensorSpec(None, ()))
    # a: the default timeout + a kernel start; b: three tries of (600 + 60), two pauses, a report
    expected = (3600 + 60) + 3 * (600 + 60) + 2 * run_bounds.RETRY_PAUSE_SECONDS + run_bounds.REPORT_SECONDS + run_bounds.RUN_MARGIN_SECONDS
    assert run_bounds.longest_allowed_run(config, settings) == expected
    assert run_bounds.workflow_bound(short, settings) == 60 + 60 + run_bounds.RUN_MARGIN_SECONDS
    # health cannot load the config: one notebook of the default timeout, with a report
    assert run_bounds.longest_allowed_run(None, settings) == 3600 + 60 + run_bounds.REPORT_SECONDS + run_bounds.RUN_MARGIN_SECONDS


def ticking_since(outputs: Path, started: dt.datetime, busy: dt.datetime | None = None, longest_run: float | None = None) -> None:
    """A fresh heartbeat of this (live) process, in a tick that started at ``started``."""
    path = heartbeat.write_heartbeat(outputs, state="ticking")
    rewrite(path, tick_started_at=started.isoformat(), busy_since=(busy or started).isoformat(), longest_run_seconds=longest_run)


def test_a_tick_busy_longer_than_the_longest_allowed_run_is_unhealthy(
    outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    started = now - dt.timedelta(hours=2)
    ticking_since(outputs, started, longest_run=3600)
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1, out
    assert out.count("\n") == 1 and out.startswith(f"unhealthy: the tick started at {started:%Y-%m-%d %H:%M:%S} UTC and has run longer")
    assert "longest allowed run, 1 h: a run is hung" in out
    ticking_since(outputs, now - dt.timedelta(minutes=30), longest_run=3600)
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 0 and "(ticking)" in out, out
    # a long tick whose current run started recently (a backfill) is healthy; a stuck run is not
    ticking_since(outputs, started, busy=now - dt.timedelta(minutes=10), longest_run=3600)
    assert run_health(outputs, monkeypatch, capsys)[0] == 0
    ticking_since(outputs, now - dt.timedelta(hours=5), busy=started, longest_run=3600)
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1 and f"has been stuck since {started:%Y-%m-%d %H:%M:%S} UTC" in out, out


def test_a_timeout_raised_since_the_service_started_counts(
    outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs read workflows.yml afresh: a bound recorded at start is raised by the config on disk."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (make_inputs(inputs) / "workflows.yml").write_text(VALID)  # bound with a 1 h default timeout: 1 h 54 min
    monkeypatch.setenv("AUTOFLOW_INPUTS_DIR", str(inputs))
    monkeypatch.setenv("AUTOFLOW_NOTEBOOK_TIMEOUT", "3600")
    now = dt.datetime.now(dt.timezone.utc)
    ticking_since(outputs, now - dt.timedelta(hours=1.5), longest_run=1800)  # recorded when the timeouts were shorter
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 0, out
    ticking_since(outputs, now - dt.timedelta(hours=3), longest_run=1800)
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1 and "longest allowed run, 1 h 54 min: a run is hung" in out, out


def test_without_a_recorded_bound_health_uses_the_settings(
    outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AUTOFLOW_INPUTS_DIR", raising=False)  # no config to read: the bound of the settings
    monkeypatch.setenv("AUTOFLOW_NOTEBOOK_TIMEOUT", "3600")
    now = dt.datetime.now(dt.timezone.utc)
    ticking_since(outputs, now - dt.timedelta(minutes=40))
    assert run_health(outputs, monkeypatch, capsys)[0] == 0
    ticking_since(outputs, now - dt.timedelta(hours=3))
    code, out = run_health(outputs, monkeypatch, capsys)
    assert code == 1 and "longest allowed run, 1 h 21 min" in out, out


def test_writer_records_the_tick_and_its_oldest_run(outputs: Path) -> None:
    run_started = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
    writer = heartbeat.HeartbeatWriter(outputs, interval=60, longest_run=600, runs_busy_since=lambda: run_started).start()
    path = heartbeat.heartbeat_path(outputs)
    try:
        assert json.loads(path.read_text())["tick_started_at"] is None
        writer.update("ticking")
        record = json.loads(path.read_text())
        assert record["busy_since"] == run_started.isoformat() and record["longest_run_seconds"] == 600
        assert dt.datetime.fromisoformat(record["tick_started_at"]) < run_started
        healthy, why = health.check(outputs, max_age=10**9, now=run_started + dt.timedelta(seconds=601))
        assert not healthy and "stuck since 2030-01-01 12:00:00 UTC" in why and "longest allowed run, 10 min" in why
        writer.update("waiting")
        assert json.loads(path.read_text())["busy_since"] is None
    finally:
        writer.stop()


def test_the_lease_tracker_knows_since_when_its_runs_are_busy() -> None:
    from autoflow.lease import LeaseTracker

    beats = LeaseTracker()
    assert beats.busy_since() is None
    beats.add(1)
    first = beats.busy_since()
    assert first is not None
    beats.add(2)
    assert beats.busy_since() == first  # the oldest running run
    beats.discard(1)
    second = beats.busy_since()
    assert second is not None and second >= first
    beats.discard(2)
    ended = beats.busy_since()
    assert ended is not None and ended >= second  # none running: when the last one ended


# -- workflows.yml on disk invalid: the service runs the last valid configuration ----------------


def test_an_invalid_workflows_yml_is_said_and_the_service_stays_healthy(
    outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = dt.datetime(2026, 12, 4, 19, 31, 5, tzinfo=dt.timezone.utc)
    problems = tuple(f"workflows.yml:{line}:7: problem {line}" for line in range(12, 19))
    state = heartbeat.ConfigState(valid=False, loaded_at=loaded, problems=problems, invalid_since=loaded + dt.timedelta(minutes=9))
    assert heartbeat.ConfigState.from_json(state.as_json()) == heartbeat.ConfigState(
        valid=False, loaded_at=loaded, problems=problems[: heartbeat.MAX_PROBLEMS], invalid_since=state.invalid_since, problem_count=7
    )
    writer = heartbeat.HeartbeatWriter(outputs, interval=60, config_state=lambda: state).start()
    try:
        record = json.loads(heartbeat.heartbeat_path(outputs).read_text())["config"]
        assert record == {
            "state": "invalid", "loaded_at": "2026-12-04T19:31:05+00:00", "problems": list(problems[:5]), "problem_count": 7,
            "invalid_since": "2026-12-04T19:40:05+00:00",
        }  # fmt: skip
        code, out = run_health(outputs, monkeypatch, capsys)
        assert code == 0, out
        first, second = out.strip().splitlines()
        assert first.startswith("healthy: heartbeat")
        assert second.startswith(
            "workflows.yml on disk is invalid since 2026-12-04 19:40 UTC (7 problems; first: workflows.yml:12:7: problem 12); "
            "the service runs the configuration loaded at 19:31 UTC. Still healthy (exit 0)"
        )
        state = heartbeat.ConfigState(valid=True, loaded_at=loaded + dt.timedelta(days=1))
        writer.write()
        code, out = run_health(outputs, monkeypatch, capsys)
        assert code == 0 and len(out.strip().splitlines()) == 1 and "workflows.yml" not in out
    finally:
        writer.stop()


def test_an_invalid_config_section_is_ignored(outputs: Path) -> None:
    path = heartbeat.write_heartbeat(outputs, state="waiting")
    for config in ({"state": "confused"}, {"state": "invalid"}, ["not", "a", "mapping"], None):
        rewrite(path, config=config)
        healthy, why = health.check(outputs)
        assert healthy and "\n" not in why, why
