"""`autoflow trigger`: one run by hand, end to end in a subprocess, recorded in the run history."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


def test_without_prefect_api_url_a_temporary_server_is_used(inputs: Path, tmp_path: Path) -> None:
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "prefect-home")}
    result = trigger(inputs, tmp_path / "outputs", "demo", "--date", "2016-01-07", "--param", "n=1", env=env)
    assert result.returncode == 0, result.stderr
    assert "starting a temporary Prefect server" in result.stderr
    assert (tmp_path / "outputs" / "logs" / "prefect-server.log").is_file()
    assert "Traceback" not in result.stderr and "database is locked" not in result.stderr
