"""``autoflow plan``: a dry run over real files and a real SQLite history that writes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoflow.store import RunStore
from autoflow.store.schema import VERSION_TABLE
from tests.example_checks import LOCAL_EXAMPLE

WIDTH = 60


def autoflow(*args: str, inputs: Path, outputs: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AUTOFLOW_SECRETS_DIR": "/nonexistent",
        "AUTOFLOW_INPUTS_DIR": str(inputs),
        "AUTOFLOW_OUTPUTS_DIR": str(outputs),
        "COLUMNS": str(WIDTH),
    }
    return subprocess.run([sys.executable, "-m", "autoflow", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """examples/local: dates from data/calls_<date>.csv, 2024-03-01 to 03-10 without 03-06."""
    return Path(shutil.copytree(LOCAL_EXAMPLE, tmp_path / "inputs"))


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_without_history_plan_creates_nothing_logs_nothing_and_fits_the_terminal(inputs: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    result = autoflow("plan", inputs=inputs, outputs=outputs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not outputs.exists()  # neither the SQLite file nor its directory
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, result.stdout
    text = " ".join(result.stdout.split())
    assert "No run history yet" in text and "5 run(s) due, 4 skipped" in text
    # 03-01 and 03-02 need February: not planned, in one line, rather than "waiting"
    assert "not planned daily-call-activity: 2 date(s) need data from before the first available date (2024-03-01)" in text
    assert "2 × waiting for data: 2024-03-06 not available" in text
    assert "2024-02-29 not available" not in text

    every = autoflow("plan", "--all", inputs=inputs, outputs=outputs)
    assert every.returncode == 0 and every.stderr == "" and not outputs.exists()
    assert max(len(line) for line in every.stdout.splitlines()) <= WIDTH, every.stdout
    assert "2024-03-02: needs 2024-02-29 before the first available date (2024-03-01): not planned" in " ".join(every.stdout.split())


def test_plan_reads_the_history_and_writes_nothing(inputs: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with RunStore(f"sqlite:///{outputs / 'autoflow.db'}") as store:
        store.upgrade()
        attempt = store.claim(
            workflow="daily-call-activity",
            parameters={"data_pattern": "data/calls_{date}.csv", "change_threshold": 20},
            reference_date=dt.date(2024, 3, 3),
            date_ranges=[],
            previous_attempt=0,
            owner="test",
        )
        assert attempt is not None
        store.finish(attempt.id, success=False, error="KeyError: 'calls'")
    before = snapshot(outputs)

    result = autoflow("plan", inputs=inputs, outputs=outputs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # failed a moment ago: it waits retry_after (10 min by default) before its second attempt
    assert "waiting for retry" in result.stdout and "retry: attempt 1 failed" not in result.stdout
    detailed = autoflow("plan", "--all", inputs=inputs, outputs=outputs)
    text = " ".join(detailed.stdout.split())
    assert "2024-03-03: waiting for retry until" in text and "(failure 1 of 3 allowed: KeyError: 'calls')" in text
    assert "No run history" not in result.stdout
    assert snapshot(outputs) == before


def test_plan_does_not_touch_a_history_of_another_schema(inputs: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    database = outputs / "autoflow.db"
    with RunStore(f"sqlite:///{database}") as store:
        store.upgrade()
    with sqlite3.connect(database) as connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff_from_the_future'")
    connection.close()
    before = snapshot(outputs)
    result = autoflow("plan", inputs=inputs, outputs=outputs)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "written by a newer AutoFlow" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(outputs) == before
