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

from autoflow import heartbeat
from autoflow.cli import health
from autoflow.cli.app import Abort, Application

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
