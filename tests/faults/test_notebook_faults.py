"""Notebooks that misbehave: each run fails with one clear line, nothing is left running, the service goes on.

- a kernel that dies (``os._exit`` in a cell);
- a notebook that never ends (its ``timeout`` stops it);
- a notebook that floods stdout with megabytes (AUTOFLOW_MAX_OUTPUT_MB stops it; memory stays bounded);
- a notebook that writes outside the outputs directory. AutoFlow cannot sandbox a notebook's
  code: the kernel runs as AutoFlow's user and may write wherever that user may. What AutoFlow
  guarantees is that it writes nothing outside the outputs directory itself (see test_paths.py);
  this test shows the run succeeds and the file the notebook chose to write is all that appeared.

All of them run in one tick of one service, next to a healthy workflow that must succeed.
A last test runs many notebooks in one process and checks no file descriptors leak.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.conftest import Figures
from tests.faults.harness import Deployment, tracebacks, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

WORKFLOWS = """\
workflows:
  - name: dies
    notebooks:
      nb: {filename: dies.ipynb}
  - name: endless
    notebooks:
      nb: {filename: endless.ipynb, timeout: 5}
  - name: flood
    notebooks:
      nb: {filename: flood.ipynb}
  - name: escape
    notebooks:
      nb: {filename: escape.ipynb, parameters: {target: target}}
  - name: healthy
    notebooks:
      nb: {filename: healthy.ipynb, output: {format: pdf}}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - {workflow_name: dies}
    - {workflow_name: endless}
    - {workflow_name: flood}
    - {workflow_name: escape, parameters: {target: MARKERS/escaped.txt}}
    - {workflow_name: healthy}
"""
NOTEBOOKS = {
    "dies.ipynb": (None, ["print('about to die')", "import os\nos._exit(3)", "print('never')"]),
    "endless.ipynb": (None, ["import time\nwhile True:\n    time.sleep(0.1)"]),
    "flood.ipynb": (None, ["for i in range(40_000):\n    print('x' * 500)", "print('never')"]),
    "escape.ipynb": ("target = None", ["open(target, 'w').write('written by the notebook itself')"]),
    "healthy.ipynb": (None, ["md:# Healthy", "print('all good')"]),
}
#: what each failing workflow's recorded error must say
EXPECTED = {
    "dies": "the kernel died while running cell 2",
    "endless": "timed out after 5 s in cell 1",
    "flood": "wrote more than 1 MB of output (in cell 1",
}


@pytest.mark.timeout(300)
def test_misbehaving_notebooks_fail_clearly_and_the_service_goes_on(tmp_path: Path, figures: Figures) -> None:
    app = Deployment(tmp_path, WORKFLOWS, NOTEBOOKS, env={"AUTOFLOW_MAX_PARALLEL_RUNS": "5", "AUTOFLOW_MAX_OUTPUT_MB": "1"})
    (app.inputs / "data").mkdir()
    (app.inputs / "data" / "2016-01-01.csv").write_text("x\n")
    service = app.start()
    kernels: dict[int, psutil.Process] = {}
    peak_rss = 0
    while service.alive():  # watch its kernels and its memory while it works
        for kernel in service.children_named("ipykernel"):
            kernels.setdefault(kernel.pid, kernel)
        try:
            peak_rss = max(peak_rss, psutil.Process(service.pid).memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    code = service.wait(240)
    stderr = service.stderr
    history = {a.workflow: a for a in app.history()}

    assert code == 1, stderr[-3000:]  # some runs failed; the tick itself went through
    assert "tick done: 5 due, 2 succeeded, 3 failed" in stderr, stderr[-3000:]
    assert tracebacks(stderr) == 0
    for workflow, expected in EXPECTED.items():
        attempt = history[workflow]
        assert attempt.state == "failed" and attempt.error is not None, attempt
        assert expected in attempt.error and "\n" not in attempt.error, attempt.error
        assert "the executed notebook is kept at" in attempt.error
        (kept,) = attempt.notebooks
        assert Path(kept).is_file() and json.loads(Path(kept).read_text())["metadata"]["autoflow"]["status"] == "failed"
        assert sum(expected in line for line in stderr.splitlines()) >= 1  # said on the console too
    flood = Path(history["flood"].notebooks[0])
    assert flood.stat().st_size < 3 * 2**20, "output past the limit was kept"
    assert json.loads(flood.read_text())["cells"][-1]["outputs"] == []  # the cell after the flood never ran
    assert peak_rss < 1024 * 2**20, f"the service grew to {peak_rss / 2**20:.0f} MB"
    assert history["healthy"].state == "success" and len(history["healthy"].reports) == 1
    assert history["escape"].state == "success"
    assert (app.markers / "escaped.txt").read_text() == "written by the notebook itself"
    assert kernels, "no kernel was ever seen"
    wait_until(lambda: not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels.values()), 20, "every kernel to end")
    figures.add("notebook faults", trials=len(NOTEBOOKS), runs_checked=len(history), tracebacks=tracebacks(stderr))
    figures.note("notebook faults", "peak service RSS MB", round(peak_rss / 2**20))


@pytest.mark.timeout(300)
def test_many_notebooks_in_one_process_leak_no_file_descriptors(tmp_path: Path, figures: Figures) -> None:
    """Each notebook used to leave an unclosed event loop (3 descriptors) behind: a long-running service ran out."""
    from autoflow.flows import workflow_run_with_runner
    from tests.nbfactory import write_notebook

    inputs = tmp_path / "inputs"
    for name in ("a.ipynb", "b.ipynb"):
        write_notebook(inputs / name, "x = 1 + 1")
    (inputs / "workflows.yml").write_text(
        "workflows: [{name: w, notebooks: {a: {filename: a.ipynb}, b: {filename: b.ipynb}}}]\n"
        "available_dates_sensor: {schedule: null, source: {type: directory, pattern: 'd/{date:%Y-%m-%d}'}, workflows: [{workflow_name: w}]}\n"
    )
    flow = workflow_run_with_runner(2)

    def one_run(day: int) -> None:
        state = flow(
            workflow="w", parameters={}, reference_date=f"2016-01-{day:02d}", date_ranges=[],
            inputs_dir=str(inputs), outputs_dir=str(tmp_path / "outputs"), return_state=True,
        )  # fmt: skip
        assert state.is_completed(), state.result(raise_on_failure=False)

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    for day in (1,):  # warm up: Prefect's clients, thread pools and caches
        one_run(day)
    before = descriptors()
    runs = 3
    for day in range(3, 3 + runs):
        one_run(day)
    grown = descriptors() - before
    figures.add("notebook faults", trials=1, runs_checked=runs, leaks=int(grown > 2))
    figures.note("notebook faults", "descriptors grown over 6 notebooks", grown)
    assert grown <= 2, f"{grown} file descriptors more after {runs} runs ({2 * runs} notebooks)"
