"""`autoflow status`: a compact table that fits the terminal, one attempt in full, quiet in a closed pipe."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from autoflow.cli import status
from autoflow.settings import Settings
from autoflow.store import Attempt, RunStore
from tests.test_cli import autoflow

WORKFLOW = "daily-call-activity-for-every-region-of-the-country"
ERROR = "notebook analyse_calls.ipynb failed in cell 3: ZeroDivisionError: division by zero\n  total / days\nsee the kept notebook"


def record_history(outputs: Path, runs: int, *, error: str = ERROR) -> None:
    """``runs`` attempts: successes with a report, failures with a multi-line error, one still running."""
    with RunStore(Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).db_url) as store:
        store.upgrade()
        for i in range(runs):
            day = dt.date(2016, 1, 1) + dt.timedelta(days=i)
            attempt = store.claim(
                workflow=WORKFLOW if i % 2 else "daily", parameters={"region": "north", "threshold": 0.25},
                reference_date=day, date_ranges=[(day - dt.timedelta(days=6), day)], previous_attempt=0,
                owner="worker-7:1234:2016-01-01T00:00:00",
            )  # fmt: skip
            assert attempt is not None
            if i == runs - 1:
                break  # the newest stays running
            notebooks = [str(outputs / "notebooks" / f"{WORKFLOW}__{day}__analyse_calls.ipynb")]
            if i % 3 == 1:
                store.finish(attempt.id, success=False, error=error, notebooks=notebooks)
            else:
                report = str(outputs / "reports" / f"daily_report__{day}__a1b2c3d4.pdf")
                store.finish(attempt.id, success=True, notebooks=notebooks, reports=[report])


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs-directory-with-a-long-name"
    path.mkdir()
    record_history(path, 12)
    return path


@pytest.mark.parametrize("columns", ["80", "100", None])
def test_table_fits_the_width_one_line_per_attempt(outputs: Path, columns: str | None) -> None:
    env = {"AUTOFLOW_OUTPUTS_DIR": str(outputs), **({"COLUMNS": columns} if columns else {})}
    result = autoflow("status", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    width = int(columns or 100)  # piped with no $COLUMNS: 100
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    rows = [line for line in lines if "2016-01-" in line]
    assert [row.split()[0] for row in rows] == [str(i) for i in range(12, 0, -1)]  # every id in full, one line each
    assert "\x1b[" not in result.stdout  # no colour in a pipe
    assert str(outputs) not in result.stdout.replace(f"({Settings.from_env({'AUTOFLOW_OUTPUTS_DIR': str(outputs)}).db_url_masked})", "")
    by_id = {row.split()[0]: row for row in rows}
    assert "reports/daily_rep" in by_id["1"]  # the report, relative to the outputs directory
    assert "notebook analyse_" in by_id["2"] and "total / days" not in result.stdout  # the error's first line only
    assert "failed" in by_id["2"] and "success" in by_id["1"] and "running" in by_id["12"]
    if width >= 100:
        assert "daily_report__2016-01-01__" in by_id["1"] and "notebook analyse_calls.ipynb failed" in by_id["2"]


def test_one_attempt_in_full(outputs: Path) -> None:
    result = autoflow("status", "2", env={"AUTOFLOW_OUTPUTS_DIR": str(outputs), "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines())
    words = " ".join(text.split())
    assert f"workflow {WORKFLOW}" in words and "reference date 2016-01-02" in words and "state failed" in words
    assert "region = north" in words and "threshold = 0.25" in words
    assert "2015-12-27 to 2016-01-02" in words
    assert "owner worker-7:1234:2016-01-01T00:00:00" in words
    assert f"notebooks/{WORKFLOW}__2016-01-02__analyse_calls.ipynb" in text.replace("\n                ", "")
    assert "total / days" in text and "see the kept notebook" in text  # the whole error
    success = autoflow("status", "1", env={"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).stdout
    assert "reports/daily_report__2016-01-01__a1b2c3d4.pdf" in success and "took" in success


@pytest.mark.parametrize(
    ("run_id", "code", "message"),
    [
        ("99", 1, "there is no run attempt 99 in "),
        ("twelve", 2, "RUN_ID 'twelve' is not a number: pass an id from the first column of 'autoflow status'"),
    ],
)
def test_unknown_or_bad_run_id(outputs: Path, run_id: str, code: int, message: str) -> None:
    result = autoflow("status", run_id, env={"AUTOFLOW_OUTPUTS_DIR": str(outputs)})
    assert result.returncode == code and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_json_keeps_recorded_paths(outputs: Path) -> None:
    rows = json.loads(autoflow("status", "--json", env={"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).stdout)
    assert len(rows) == 12 and rows[-1]["reports"] == [str(outputs / "reports" / "daily_report__2016-01-01__a1b2c3d4.pdf")]
    one = json.loads(autoflow("status", "2", "--json", env={"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).stdout)
    assert one["id"] == 2 and one["error"] == ERROR


@pytest.mark.parametrize("args", [("status", "--json"), ("status", "--limit", "500")])
def test_reader_closing_the_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    record_history(outputs, 300, error="x" * 2000)  # far more than a pipe holds
    env = {"PATH": "/usr/bin:/bin", "AUTOFLOW_SECRETS_DIR": "/nonexistent", "AUTOFLOW_OUTPUTS_DIR": str(outputs)}
    with subprocess.Popen(
        [sys.executable, "-m", "autoflow", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        head = [process.stdout.readline() for _ in range(2)]
        process.stdout.close()  # like `| head -2`
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=60)
    assert all(head)
    assert code == 0 and stderr == ""


def test_outputs_option_before_or_after_the_command(outputs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    for args in (["--outputs", str(outputs), "status", "--json"], ["status", "--json", "--outputs", str(outputs)]):
        result = autoflow(*args, env={"AUTOFLOW_OUTPUTS_DIR": str(elsewhere)})  # the option wins over the variable
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == 12
    assert json.loads(autoflow("status", "--json", env={"AUTOFLOW_OUTPUTS_DIR": str(elsewhere)}).stdout) == []
    missing = autoflow("status")
    assert missing.returncode == 2 and "AUTOFLOW_OUTPUTS_DIR is not set" in missing.stderr and "--outputs DIR" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stauts"], "autoflow: error: unknown command 'stauts'; did you mean 'status'?"),
        (["--inputs", "x", "tirgger"], "autoflow: error: unknown command 'tirgger'; did you mean 'trigger'?"),
        (["db", "upgarde"], "autoflow db: error: unknown action 'upgarde'; did you mean 'upgrade'?"),
        (["frobnicate"], "autoflow: error: unknown command 'frobnicate'; the commands are: run, validate, plan"),
    ],
)
def test_unknown_command_did_you_mean(args: list[str], message: str) -> None:
    result = autoflow(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1


def attempt(id: int, state: str, **changes: object) -> Attempt:
    started = dt.datetime(2016, 1, 8, 2, 0, tzinfo=dt.timezone.utc)
    values: dict[str, object] = {
        "id": id, "workflow": WORKFLOW, "parameters": {"n": 1}, "params_hash": "h", "reference_date": dt.date(2016, 1, 7),
        "date_ranges": [(dt.date(2016, 1, 7), dt.date(2016, 1, 7))], "state": state, "attempt": 1, "started_at": started,
        "finished_at": None if state == "running" else started + dt.timedelta(minutes=3, seconds=7), "heartbeat_at": started,
        "owner": "worker-7:1234:2016-01-01T00:00:00", "error": ERROR if state == "failed" else None, "notebooks": [],
        "reports": ["/srv/outputs/reports/r.pdf"] if state == "success" else [], "flow_run_id": None, "trigger": "sensor",
    }  # fmt: skip
    return Attempt(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [50, 80, 100])
def test_terminal_table_keeps_ids_and_colours_states(width: int) -> None:
    attempts = [attempt(1234567, "failed"), attempt(99, "success"), attempt(7, "running")]
    console = Console(width=width, force_terminal=True, color_system="standard", markup=False, emoji=False, highlight=False)
    with console.capture() as capture:
        console.print(status.history_table(attempts, Path("/srv/outputs"), title="Run history"))
    coloured = capture.get()
    plain = Text.from_ansi(coloured).plain.splitlines()
    assert all(len(line) <= width for line in plain), "\n".join(plain)
    rows = [line for line in plain if "2016-01-07" in line]
    assert [row.split()[0] for row in rows] == ["1234567", "99", "7"]
    assert "\x1b[1;31mfailed" in coloured and "\x1b[32msuccess" in coloured and "\x1b[33mrunning" in coloured
    if width >= 80:
        assert "3m 07s" in rows[0] and "reports/r.pdf" in rows[1] and "since 01-08 02:00" in rows[2]
    if width >= 100:
        assert "since 01-08 02:00 UTC on worker-7" in rows[2]


def test_status_reads_only(tmp_path: Path) -> None:
    """With no history yet, status says so and creates no database file (or folder)."""
    outputs = tmp_path / "not-yet"
    env = {"AUTOFLOW_OUTPUTS_DIR": str(outputs)}
    listed = autoflow("status", env=env)
    one = autoflow("status", "3", env=env)
    assert (listed.returncode, listed.stdout.strip(), listed.stderr) == (0, "No runs recorded yet.", "")
    assert one.returncode == 1 and "there is no run attempt 3" in one.stderr
    assert not outputs.exists()
