"""execute_workflow without kernels: recording fakes stand in for papermill and nbconvert (the seams
``NotebookRunner`` and ``ReportExporter``); the scheduling, dependency and error logic is AutoFlow's own.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from autoflow.errors import NotebookExecutionError, ReportError
from autoflow.flows import NotebookRunner, ReportExporter, RunOutcome, RunRequest, execute_workflow
from autoflow.notebooks import ExecutionLimits
from autoflow.settings import Settings
from autoflow.spec.loader import load_config
from autoflow.spec.models import ReportSpec, WorkflowSpec
from tests.nbfactory import write_notebook

pytestmark = pytest.mark.usefixtures("prefect_api_url")

DAY = dt.date(2016, 1, 7)


class FakeRunner:
    """Writes a stand-in executed copy, or fails for the notebooks named in ``failing``."""

    def __init__(self, failing: Mapping[str, str] = {}, *, retryable: bool = True) -> None:
        self.failing = failing
        self.retryable = retryable
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(
        self, notebook: Path, output: Path, parameters: Mapping[str, Any], *, timeout: float | None,
        limits: ExecutionLimits, metadata: Mapping[str, Any],
    ) -> object:  # fmt: skip
        label = str(metadata["notebook"])
        with self._lock:
            self.calls.append((label, dict(parameters)))
        if label in self.failing:
            output.write_text("partial")
            raise NotebookExecutionError(
                f"{notebook.name} failed: {self.failing[label]}", notebook=notebook.name, output_path=output, retryable=self.retryable
            )
        output.write_text("executed")
        return output

    @property
    def order(self) -> list[str]:
        return [label for label, _ in self.calls]


class FakeExporter:
    """Writes a stand-in report, or fails for every format (``failing=True``) or those named."""

    def __init__(self, failing: bool | set[str] = False) -> None:
        self.failing = failing
        self.exported: list[str] = []
        self.reports: list[ReportSpec] = []

    def __call__(
        self, executed: Path, target: Path, *, format: str, template: Path | None, title: str | None, report: ReportSpec
    ) -> object:
        if self.failing is True or (isinstance(self.failing, set) and format in self.failing):
            raise ReportError("asciidoctor-pdf is missing" if format == "pdf" else f"cannot convert {executed.name} to HTML")
        self.exported.append(executed.name if format == "pdf" else f"{executed.name} as {format}")
        self.reports.append(report)
        target.write_text(format)
        return target


def workflow(tmp_path: Path, notebooks_yml: str) -> tuple[WorkflowSpec, Settings]:
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "nb.ipynb", "print(upstream)", parameters="upstream = None\nother = None")
    text = "workflows:\n  - name: w\n    notebooks:\n" + textwrap.indent(textwrap.dedent(notebooks_yml), "      ")
    (inputs / "workflows.yml").write_text(text + "available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}\n")
    config = load_config(inputs)
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "out"), max_parallel_notebooks=2)
    return config.workflows["w"], settings


@flow(name="execute-workflow-test", persist_result=False, validate_parameters=False, task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def _in_a_flow(spec: WorkflowSpec, settings: Settings, runner: Any, exporter: Any, report: ReportSpec) -> RunOutcome:  # Protocols are no pydantic types
    request = RunRequest("w", {}, DAY, ((DAY, DAY),), attempt_id=7)
    return execute_workflow(spec, request, settings, runner=runner, exporter=exporter, report=report)


def run(
    spec: WorkflowSpec, settings: Settings, runner: NotebookRunner, exporter: ReportExporter, report: ReportSpec = ReportSpec()
) -> RunOutcome:
    """execute_workflow as the workflow-run flow calls it: inside a flow run (its tasks need one)."""
    return _in_a_flow(spec, settings, runner, exporter, report)


def test_notebooks_run_after_what_they_depend_on_and_receive_its_output(tmp_path: Path) -> None:
    spec, settings = workflow(tmp_path, """
        c: {filename: nb.ipynb, parameters: {upstream: b}}
        b: {filename: nb.ipynb, parameters: {upstream: a}}
        a: {filename: nb.ipynb, output: {format: pdf}}
    """)  # fmt: skip
    runner, exporter = FakeRunner(), FakeExporter()
    outcome = run(spec, settings, runner, exporter)
    assert outcome.success, outcome.error
    assert runner.order == ["a", "b", "c"]
    by_label = dict(runner.calls)
    a_copy, b_copy = (Path(p) for p in outcome.notebooks[:2])
    assert by_label["b"]["upstream"] == str(a_copy) and by_label["c"]["upstream"] == str(b_copy)
    assert [Path(p).name.split("__")[0] for p in outcome.notebooks] == ["nb"] * 3
    assert exporter.exported == [a_copy.name]
    assert [Path(p).name for p in outcome.reports] == [a_copy.stem + ".pdf"]


def test_a_failure_skips_only_its_dependants_and_the_error_sums_up(tmp_path: Path) -> None:
    spec, settings = workflow(tmp_path, """
        bad: {filename: nb.ipynb}
        fine: {filename: nb.ipynb}
        after_bad: {filename: nb.ipynb, parameters: {upstream: bad}}
        after_after: {filename: nb.ipynb, parameters: {upstream: after_bad}}
        also_bad: {filename: nb.ipynb}
        after_fine: {filename: nb.ipynb, parameters: {upstream: fine}}
    """)  # fmt: skip
    runner = FakeRunner({"bad": "ValueError: no data for this day", "also_bad": "KeyError: 'col'"})
    outcome = run(spec, settings, runner, FakeExporter())
    assert not outcome.success
    assert sorted(runner.order) == ["after_fine", "also_bad", "bad", "fine"]  # the dependants of bad never ran
    assert outcome.error is not None
    assert outcome.error.startswith("nb.ipynb failed: ValueError: no data for this day")
    assert outcome.error.endswith("; 1 more failed: also_bad; not run because of the failures: after_bad, after_after"), outcome.error
    assert len(outcome.notebooks) == 4  # the failed notebooks' partial copies are kept and listed


def test_a_failed_report_fails_the_run_but_keeps_its_notebook(tmp_path: Path) -> None:
    spec, settings = workflow(tmp_path, """
        r: {filename: nb.ipynb, output: {format: pdf}}
    """)  # fmt: skip
    outcome = run(spec, settings, FakeRunner(), FakeExporter(failing=True))
    assert not outcome.success and outcome.error == "report r: asciidoctor-pdf is missing"
    assert len(outcome.notebooks) == 1 and outcome.reports == []


def test_a_report_is_made_in_every_format_its_output_asks_for(tmp_path: Path) -> None:
    spec, settings = workflow(tmp_path, """
        r: {filename: nb.ipynb, output: {formats: [pdf, html]}}
    """)  # fmt: skip
    exporter, report = FakeExporter(), ReportSpec(organisation="Example Org")
    outcome = run(spec, settings, FakeRunner(), exporter, report)
    assert outcome.success, outcome.error
    stem = Path(outcome.notebooks[0]).stem
    assert [Path(p).name for p in outcome.reports] == [f"{stem}.pdf", f"{stem}.html"]
    assert all(Path(p).parent == settings.reports_dir and Path(p).is_file() for p in outcome.reports)
    assert exporter.reports == [report, report]  # the config's report block reaches every format


def test_one_failed_format_fails_the_report_and_keeps_the_other(tmp_path: Path) -> None:
    spec, settings = workflow(tmp_path, """
        r: {filename: nb.ipynb, output: {formats: [html, pdf]}}
    """)  # fmt: skip
    outcome = run(spec, settings, FakeRunner(), FakeExporter(failing={"html"}))
    assert not outcome.success and outcome.error is not None
    assert outcome.error.startswith("report r: cannot convert ") and "to HTML" in outcome.error
    assert [Path(p).suffix for p in outcome.reports] == [".pdf"]


@pytest.mark.parametrize(("retryable", "tries"), [(True, 3), (False, 1)])
def test_retries_only_what_running_again_can_mend(tmp_path: Path, retryable: bool, tries: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook without a parameters cell fails the same way every time: it is not retried."""
    monkeypatch.setattr("autoflow.flows.RETRY_DELAY_SECONDS", 0.0)
    spec, settings = workflow(tmp_path, """
        nb: {filename: nb.ipynb, retries: 2}
    """)  # fmt: skip
    runner = FakeRunner({"nb": "no cell tagged 'parameters'"}, retryable=retryable)
    outcome = run(spec, settings, runner, FakeExporter())
    assert not outcome.success and runner.order == ["nb"] * tries
