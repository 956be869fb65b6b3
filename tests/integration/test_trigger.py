"""`autoflow trigger`: one run by hand, end to end in a subprocess, recorded in the run history."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from autoflow.settings import Settings
from autoflow.store import RunStore
from tests.nbfactory import write_notebook

pytestmark = pytest.mark.slow

WORKFLOWS = """\
workflows:
  - name: demo
    notebooks:
      first:
        filename: first.ipynb
        parameters: {reference_date: reference_date, date_ranges: date_ranges, n: n}
      report:
        filename: report.ipynb
        parameters: {upstream: first}
        output: {format: pdf}
  - name: broken
    notebooks:
      bad: {filename: bad.ipynb}
  - name: adhoc
    notebooks:
      first:
        filename: first.ipynb
        parameters: {reference_date: reference_date, date_ranges: date_ranges, n: n}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - workflow_name: demo
      parameters: {n: 2}
      date_stencil: [[-2, 0]]
"""


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    inputs = tmp_path / "inputs"
    write_notebook(
        inputs / "first.ipynb",
        "import scrapbook as sb\nsb.glue('days', [date_ranges[0], n])",
        parameters="reference_date = date_ranges = n = None",
    )
    write_notebook(
        inputs / "report.ipynb",
        "md:# Demo report",
        "import scrapbook as sb\nimport matplotlib.pyplot as plt\n(start, end), n = sb.read_notebook(upstream).scraps['days'].data\nprint(f'From {start} to {end}, n={n}')\nplt.plot([1, 2, 3], [n, n * 2, n * 3])\nplt.show()",
        parameters="upstream = None",
    )
    write_notebook(inputs / "bad.ipynb", "1 / 0")
    (inputs / "workflows.yml").write_text(WORKFLOWS)
    return inputs


def trigger(inputs: Path, outputs: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFLOW_")}
    full = {**base, "AUTOFLOW_INPUTS_DIR": str(inputs), "AUTOFLOW_OUTPUTS_DIR": str(outputs), **(env or {})}
    return subprocess.run([sys.executable, "-m", "autoflow", "trigger", *args], env=full, capture_output=True, text=True, timeout=600)


@pytest.mark.usefixtures("prefect_api_url")
def test_trigger_runs_records_and_prints_outputs(inputs: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    result = trigger(inputs, outputs, "demo", "--date", "2016-01-07")  # the sensor entry's n and stencil
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    notebooks = [Path(line.split(": ", 1)[1].strip()) for line in lines if line.startswith("notebook:")]
    reports = [Path(line.split(": ", 1)[1].strip()) for line in lines if line.startswith("report:")]
    assert len(notebooks) == 2 and all(p.is_file() for p in notebooks)
    assert len(reports) == 1 and reports[0].is_file() and reports[0].parent == outputs / "reports"
    text = subprocess.run(["pdftotext", str(reports[0]), "-"], capture_output=True, text=True, check=True).stdout
    assert "From 2016-01-05 to 2016-01-07, n=2" in text  # the sensor entry's stencil [[-2, 0]] and parameters
    images = subprocess.run(["pdfimages", "-list", str(reports[0])], capture_output=True, text=True, check=True).stdout
    assert len(images.splitlines()) > 2
    with RunStore(Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).db_url) as store:
        (attempt,) = store.history()
    assert attempt.trigger == "manual" and attempt.state == "success" and attempt.parameters == {"n": 2}
    assert sorted(attempt.notebooks) == sorted(map(str, notebooks)) and attempt.reports == [str(reports[0])]

    elsewhere = {"AUTOFLOW_OUTPUTS_DIR": str(tmp_path / "elsewhere")}  # --outputs wins over the variable
    again = trigger(inputs, outputs, "demo", "--date", "2016-01-07", "--param", "n=2", "--stencil", "[0]", "--outputs", str(outputs), env=elsewhere)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "elsewhere").exists()
    with RunStore(Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(outputs)}).db_url) as store:
        assert [a.attempt for a in store.history()] == [2, 1]  # a manual re-run is a new attempt


@pytest.mark.usefixtures("prefect_api_url")
def test_failed_run_exits_1_with_one_clear_line(inputs: Path, tmp_path: Path) -> None:
    result = trigger(inputs, tmp_path / "outputs", "broken", "--date", "2016-01-01")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "ZeroDivisionError" in line]  # said once
    assert "notebook bad.ipynb failed in cell" in error
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("autoflow: error: the run failed") and "autoflow status " in last
    (kept,) = (Path(line.split(": ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("notebook:"))
    assert kept.is_file() and str(kept) in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--date", "2016-01-01"], "unknown workflow 'nope'; workflows.yml defines: demo, broken, adhoc"),
        (["adhoc", "--date", "2016-01-01"], "missing parameter(s) n"),
        (["demo", "--date", "2016-01-01", "--entry", "2"], "--entry 2: workflow demo has 1 sensor entry; pick a number from 1 to 1"),
        (["demo", "--date", "2016-01-01", "--entry", "0"], "'0' is not a sensor entry number"),
        (["demo", "--date", "2016-01-01", "--param", "n=1", "--param", "m=2"], "parameter 'm' is not used by this workflow"),
        (["demo", "--date", "yesterday", "--param", "n=1"], "--date 'yesterday' is not a date"),
        (["demo", "--date", "2016-01-01", "--param", "n"], "must look like NAME=VALUE"),
        (["demo", "--date", "2016-01-01", "--param", "n=1", "--stencil", "[[0, -1]]"], "--stencil"),
    ],
)
def test_bad_arguments_exit_2(inputs: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = trigger(inputs, tmp_path / "outputs", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_without_prefect_api_url_the_run_does_not_wait_for_the_temporary_server(inputs: Path, tmp_path: Path) -> None:
    # the server counts as answering only once the run has ended: the whole run happens before,
    # and is recorded in Prefect afterwards, under its flow and task names, with its log lines
    prefect_home = tmp_path / "prefect-home"
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(prefect_home), "AUTOFLOW_TEST_PREFECT_AFTER_RUNS": "1"}
    result = trigger(inputs, tmp_path / "outputs", "demo", "--date", "2016-01-07", "--param", "n=1", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    (starting,) = [i for i, line in enumerate(lines) if "starting a temporary Prefect server" in line]
    (claimed,) = [i for i, line in enumerate(lines) if "run demo for 2016-01-07 (attempt 1): started" in line]
    (answered,) = [i for i, line in enumerate(lines) if "Prefect API ready" in line]
    assert starting < claimed < answered
    assert (tmp_path / "outputs" / "logs" / "prefect-server.log").is_file()
    assert "Traceback" not in result.stderr and "database is locked" not in result.stderr
    assert "could not record" not in result.stderr and "not in Prefect" not in result.stderr

    with RunStore(Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(tmp_path / "outputs")}).db_url) as store:
        (attempt,) = store.history()
    assert attempt.state == "success" and attempt.flow_run_id
    with sqlite3.connect(prefect_home / "prefect.db") as db:  # the server has stopped: its database
        flow_runs = db.execute(
            "select fr.id, f.name, fr.name, fr.state_type from flow_run fr join flow f on f.id = fr.flow_id"
        ).fetchall()
        assert [(str(uuid.UUID(r[0])), *r[1:]) for r in flow_runs] == [
            (attempt.flow_run_id, "workflow-run", "demo-2016-01-07", "COMPLETED")
        ]  # the run history names the flow run
        tasks = dict(db.execute("select name, state_type from task_run").fetchall())
        assert tasks == {"first": "COMPLETED", "report": "COMPLETED", "report-report": "COMPLETED"}
        (message,) = db.execute("select message from flow_run_state where type = 'RUNNING'").fetchone()
        assert "before the Prefect server answered" in message
        logged = [row[0] for row in db.execute("select message from log where flow_run_id is not null")]
    assert any(m.startswith("notebook first: done in") for m in logged) and any("succeeded in" in m for m in logged)


def test_a_temporary_server_that_cannot_start_does_not_fail_the_run(inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").touch()
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "a-file" / "prefect-home")}  # its database cannot be made
    result = trigger(inputs, tmp_path / "outputs", "demo", "--date", "2016-01-07", "--param", "n=1", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "the temporary Prefect server exited with code" in error and "prefect-server.log" in error
    assert "recorded in the run history but not in Prefect" in error
    with RunStore(Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(tmp_path / "outputs")}).db_url) as store:
        (attempt,) = store.history()
    assert attempt.state == "success" and attempt.flow_run_id is None
    assert len([line for line in result.stdout.splitlines() if line.startswith("notebook:")]) == 2
