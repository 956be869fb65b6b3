"""One workflow run for real: Prefect flow, papermill kernels, scrapbook hand-off, PDF reports."""

from __future__ import annotations

import datetime as dt
import json
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import scrapbook as sb

from tests.nbfactory import write_notebook

pytestmark = pytest.mark.usefixtures("prefect_api_url")

D = dt.date


def make_inputs(root: Path, workflows_yml: str, notebooks: dict[str, tuple[str, list[str]]]) -> Path:
    inputs = root / "inputs"
    for name, (parameters, cells) in notebooks.items():
        write_notebook(inputs / name, *cells, parameters=parameters)
    (inputs / "workflows.yml").write_text(textwrap.dedent(workflows_yml))
    return inputs


def run(inputs: Path, outputs: Path, workflow: str, parameters: dict[str, Any], day: dt.date, ranges: list[list[str]] | None = None) -> tuple[bool, dict[str, Any]]:
    from autoflow.flows import workflow_run_with_runner
    from autoflow.parameters import to_typed_json

    flow = workflow_run_with_runner(2)
    state = flow(
        workflow=workflow,
        parameters=to_typed_json(parameters),
        reference_date=day.isoformat(),
        date_ranges=ranges or [[day.isoformat(), day.isoformat()]],
        inputs_dir=str(inputs),
        outputs_dir=str(outputs),
        return_state=True,
    )
    return state.is_completed(), state.result(raise_on_failure=False)


SENSOR_NULL = "available_dates_sensor: {schedule: null, source: {type: directory, pattern: 'd/{date:%Y-%m-%d}'}, workflows: [{workflow_name: w, parameters: {country: Nepal, n: 3, day: 2016-01-01}}]}\n"

GLUE_ALL = "import scrapbook as sb\nfor name in ('reference_date', 'date_ranges', 'flowapi_url', 'country', 'n', 'day'):\n    sb.glue(name, globals()[name])\nsb.glue('types', {k: type(globals()[k]).__name__ for k in ('reference_date', 'date_ranges', 'country', 'n', 'day')})"


def test_two_notebooks_hand_off_and_every_parameter_arrives_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWAPI_URL", "https://flowapi.example:9090")
    inputs = make_inputs(
        tmp_path,
        """
        workflows:
          - name: w
            notebooks:
              first:
                filename: first.ipynb
                parameters: {reference_date: reference_date, date_ranges: date_ranges, flowapi_url: flowapi_url, country: country, n: n, day: day}
              second:
                filename: second.ipynb
                parameters: {upstream: first}
        """ + SENSOR_NULL,
        {
            "first.ipynb": ("reference_date = date_ranges = flowapi_url = country = n = day = None", [GLUE_ALL]),
            "second.ipynb": ("upstream = None", ["import scrapbook as sb, os\nup = sb.read_notebook(upstream)\nsb.glue('upstream_path', upstream)\nsb.glue('doubled', up.scraps['n'].data * 2)\nsb.glue('cwd', os.getcwd())"]),
        },
    )
    outputs = tmp_path / "outputs"
    ok, result = run(inputs, outputs, "w", {"country": "Nepal", "n": 3, "day": D(2016, 1, 1)}, D(2016, 1, 7),
                     [["2016-01-01", "2016-01-03"], ["2016-01-04", "2016-01-04"], ["2016-01-05", "2016-01-07"]])  # fmt: skip
    assert ok, result
    first, second = (Path(p) for p in result["notebooks"])
    assert first.parent == second.parent == outputs / "notebooks"
    assert first.name.startswith("first__w__2016-01-07__") and second.name.startswith("second__w__2016-01-07__")
    scraps = sb.read_notebook(str(first)).scraps
    assert scraps["reference_date"].data == "2016-01-07"
    assert scraps["date_ranges"].data == [["2016-01-01", "2016-01-03"], ["2016-01-04", "2016-01-04"], ["2016-01-05", "2016-01-07"]]
    assert scraps["flowapi_url"].data == "https://flowapi.example:9090"
    assert scraps["country"].data == "Nepal" and scraps["n"].data == 3 and scraps["day"].data == "2016-01-01"
    assert scraps["types"].data == {"reference_date": "str", "date_ranges": "list", "country": "str", "n": "int", "day": "str"}
    later = sb.read_notebook(str(second)).scraps
    assert later["upstream_path"].data == str(first)  # absolute path of this run's executed copy
    assert later["doubled"].data == 6
    metadata = json.loads(first.read_text())["metadata"]["autoflow"]
    assert metadata["workflow"] == "w" and metadata["reference_date"] == "2016-01-07"
    assert metadata["parameters"] == {"country": "Nepal", "n": 3, "day": "2016-01-01"}


def test_independent_notebooks_overlap(tmp_path: Path) -> None:
    sleeper = "import time, scrapbook as sb\nstart = time.time()\ntime.sleep(3)\nsb.glue('span', [start, time.time()])"
    inputs = make_inputs(
        tmp_path,
        """
        workflows:
          - name: w
            notebooks:
              a: {filename: a.ipynb}
              b: {filename: b.ipynb}
        available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}
        """,
        {"a.ipynb": ("x = 1", [sleeper]), "b.ipynb": ("x = 1", [sleeper])},
    )
    ok, result = run(inputs, tmp_path / "out", "w", {}, D(2016, 1, 1))
    assert ok, result
    (a0, a1), (b0, b1) = (sb.read_notebook(p).scraps["span"].data for p in result["notebooks"])
    assert max(a0, b0) < min(a1, b1), "the two notebooks did not run at the same time"


@contextmanager
def service_console() -> Iterator[None]:
    """AutoFlow's console logging (as the service sets it up) on this test's stderr, for one block."""
    from autoflow.logs import setup_logging

    loggers = [logging.getLogger(name) for name in ("", "autoflow", "prefect", "uvicorn", "fastapi")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    setup_logging("INFO")
    try:
        yield
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved):
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.slow
def test_failure_stops_only_dependents_and_keeps_the_failed_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autoflow.parameters import params_hash
    from autoflow.planning import DueRun
    from autoflow.runs import Launcher
    from autoflow.settings import Settings
    from autoflow.store import RunStore

    inputs = make_inputs(
        tmp_path,
        """
        workflows:
          - name: w
            notebooks:
              bad: {filename: bad.ipynb}
              fine: {filename: fine.ipynb}
              after_bad: {filename: fine.ipynb, parameters: {upstream: bad}}
              after_after: {filename: fine.ipynb, parameters: {upstream: after_bad}}
              also_bad: {filename: also_bad.ipynb}
        available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}
        """,
        {
            "bad.ipynb": ("x = 1", ["print('before')", "raise ValueError('no data for this day')", "print('never')"]),
            "also_bad.ipynb": ("x = 1", ["raise KeyError('no such column')"]),
            "fine.ipynb": ("upstream = None", ["print('fine')"]),
        },
    )
    outputs = tmp_path / "out"
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(outputs), max_parallel_notebooks=2)
    day = D(2016, 1, 1)
    with RunStore(settings.db_url) as store, service_console():
        store.upgrade()
        launcher = Launcher(store, settings, trigger="manual")
        try:
            launched = launcher.launch(DueRun("w", {}, params_hash({}), day, ((day, day),), 0, "test"))
        finally:
            launcher.close()
        [attempt] = store.history()
    outcome = launched.outcome
    assert outcome is not None and not outcome.success
    names = sorted(Path(p).name.split("__")[0] for p in outcome.notebooks)
    assert names == ["also_bad", "bad", "fine"]  # after_bad and after_after never ran
    error = outcome.error
    assert error is not None and attempt.state == "failed" and attempt.error == error
    assert "ValueError" in error and "no data for this day" in error and "bad.ipynb" in error
    bad = next(Path(p) for p in outcome.notebooks if Path(p).name.startswith("bad"))
    assert str(bad) in error
    text = bad.read_text()
    assert "no data for this day" in text and "before" in text
    # one more real failure, by name; the notebooks skipped because of them are not failures
    assert error.endswith("; 1 more failed: also_bad; not run because of the failures: after_bad, after_after"), error
    assert "no such column" not in error
    # the failing notebook's message is logged once: by the run's end, not also by its task
    logged = capsys.readouterr().err
    assert sum("no data for this day" in line for line in logged.splitlines()) == 1, logged  # one line says it
    assert "run w for 2016-01-01 (attempt 1): failed" in logged and "notebook bad: failed after" in logged


def test_timeout_and_retries(tmp_path: Path) -> None:
    counter = tmp_path / "attempts.txt"
    inputs = make_inputs(
        tmp_path,
        f"""
        workflows:
          - name: slow
            notebooks:
              s: {{filename: slow.ipynb, timeout: 4}}
          - name: flaky
            notebooks:
              f: {{filename: flaky.ipynb, retries: 2}}
        available_dates_sensor: {{schedule: null, workflows: [{{workflow_name: slow}}, {{workflow_name: flaky}}]}}
        """,
        {
            "slow.ipynb": ("x = 1", ["import time\ntime.sleep(120)"]),
            "flaky.ipynb": ("x = 1", [f"from pathlib import Path\np = Path({str(counter)!r})\nn = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\nassert n >= 2, f'attempt {{n}} fails'"]),
        },
    )
    ok, result = run(inputs, tmp_path / "out", "slow", {}, D(2016, 1, 1))
    assert not ok and "timed out" in result["error"] and "4" in result["error"]
    ok, result = run(inputs, tmp_path / "out", "flaky", {}, D(2016, 1, 1))
    assert ok, result
    assert counter.read_text() == "2"
    assert len(list((tmp_path / "out" / "notebooks").glob("flaky__*"))) == 2  # the failed attempt's copy is kept too


def test_pdf_report_with_table_and_figure(tmp_path: Path) -> None:
    import shutil
    import subprocess

    inputs = make_inputs(
        tmp_path,
        """
        workflows:
          - name: w
            notebooks:
              r: {filename: report.ipynb, parameters: {day: reference_date}, output: {format: pdf}}
        available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}
        """,
        {
            "report.ipynb": ("day = None", [
                "md:# Flows above normal",
                "import pandas as pd\nimport matplotlib.pyplot as plt\nSECRET_CODE_MARKER = 1\nprint('Report for', day)",
                "pd.DataFrame({'region': ['North', 'South'], 'flows': [120, 80]})",
                "fig, ax = plt.subplots()\nax.bar(['North', 'South'], [120, 80])\nplt.show()",
            ]),
        },
    )
    ok, result = run(inputs, tmp_path / "out", "w", {}, D(2016, 1, 7))
    assert ok, result
    (pdf,) = (Path(p) for p in result["reports"])
    assert pdf.parent == tmp_path / "out" / "reports" and pdf.stem == Path(result["notebooks"][0]).stem
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Flows above normal" in text and "Report for 2016-01-07" in text
    assert "North" in text and "120" in text
    assert "SECRET_CODE_MARKER" not in text and "import pandas" not in text
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(images) > 2, "no embedded figure"
    assert shutil.which("pdftotext")
