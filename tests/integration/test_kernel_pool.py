"""Pre-started, single-use kernels (autoflow.notebooks.kernel_pool) on real kernels."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from autoflow.errors import SettingsError
from autoflow.flows import RunOutcome, RunRequest, execute_workflow
from autoflow.notebooks import execute_notebook
from autoflow.notebooks import kernel_pool as kernel_pool_module
from autoflow.notebooks.kernel_pool import KernelKey, KernelPool, close_kernel_pool, kernel_pool
from autoflow.settings import Settings
from autoflow.spec.loader import load_config
from autoflow.spec.models import WorkflowSpec
from tests.nbfactory import write_notebook

#: a cell printing what a notebook can see of its kernel: pid, working directory, what an earlier
#: notebook left, a secret AutoFlow keeps from notebooks, the one it passes (reversed: AutoFlow
#: would redact it), and when the kernel started
PROBE = (
    "import os, json, psutil\n"
    "print(json.dumps({'pid': os.getpid(), 'cwd': os.getcwd(), 'left': 'left_behind' in globals(),"
    " 'db_password': 'AUTOFLOW_DB_PASSWORD' in os.environ, 'token': (os.environ.get('FLOWAPI_TOKEN') or '')[::-1],"
    " 'prefect_api': 'PREFECT_API_URL' in os.environ, 'worker': os.environ.get('PREFECT__WORKER_NAME'),"
    " 'started': psutil.Process().create_time()}))\n"
    "left_behind = 1"
)


def kernel_children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(p.cmdline())
    }


def wait_for(condition: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelPool]:
    """This process's kernel pool, on (4 kernels), closed afterwards; no kernel may outlive it."""
    close_kernel_pool()
    before = kernel_children()
    monkeypatch.setenv("AUTOFLOW_KERNEL_POOL", "4")
    made = kernel_pool()
    assert made is not None
    yield made
    close_kernel_pool()
    wait_for(lambda: kernel_children() <= before, 10)  # kernels retired after their notebook end within seconds


def probe(nb_path: Path, out: Path) -> dict[str, Any]:
    execute_notebook(nb_path, out, {"x": 1})
    (cell,) = [c for c in nbformat.read(out, as_version=4).cells if "left_behind = 1" in c.source]
    return json.loads(cell.outputs[0]["text"])  # type: ignore[no-any-return]


def test_each_notebook_gets_its_own_prestarted_kernel_which_sees_nothing_of_the_last(
    tmp_path: Path, pool: KernelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOFLOW_DB_PASSWORD", "pool-db-secret")
    monkeypatch.setenv("FLOWAPI_TOKEN", "pool-token")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("PREFECT__WORKER_NAME", "worker-a")  # a notebook may ask which worker runs it
    nb_path = write_notebook(tmp_path / "notebooks" / "probe.ipynb", PROBE, parameters="x = 0")
    key = KernelKey.of("python3", nb_path.parent)
    pool.expect([key, key])
    wait_for(lambda: len(pool.ready()) == 2)
    started = set(pool.ready())
    first = probe(nb_path, tmp_path / "first.ipynb")
    second = probe(nb_path, tmp_path / "second.ipynb")
    assert {first["pid"], second["pid"]} == started, "both notebooks ran on the kernels started ahead"
    assert pool.handed_out == 2
    assert not first["left"] and not second["left"], "a variable of one notebook was seen by the next"
    assert first["cwd"] == second["cwd"] == str(nb_path.parent)
    assert not first["db_password"] and first["token"] == "pool-token"[::-1]
    assert not first["prefect_api"] and first["worker"] == "worker-a"
    wait_for(lambda: not (started & kernel_children()), 10)  # single use: each shut down after its notebook
    third = probe(nb_path, tmp_path / "third.ipynb")  # none left: it starts its own
    assert third["pid"] not in started and not third["left"]
    assert (third["prefect_api"], third["worker"]) == (False, "worker-a")  # its own kernel: the same environment


def test_a_kernel_that_died_while_waiting_is_discarded_and_replaced(
    tmp_path: Path, pool: KernelPool, caplog: pytest.LogCaptureFixture
) -> None:
    nb_path = write_notebook(tmp_path / "probe.ipynb", PROBE, parameters="x = 0")
    key = KernelKey.of("python3", tmp_path)
    pool.expect([key])
    wait_for(lambda: len(pool.ready()) == 1)
    (dead,) = pool.ready()
    with caplog.at_level(logging.INFO, logger="autoflow"):
        os.killpg(dead, signal.SIGKILL)
        wait_for(lambda: pool.died == 1 and len(pool.ready()) == 1)
    (replacement,) = pool.ready()
    assert replacement != dead and "exited while waiting; discarded and replaced" in caplog.text
    assert probe(nb_path, tmp_path / "out.ipynb")["pid"] == replacement


def test_a_kernel_dying_just_before_it_is_handed_out_is_not_used(tmp_path: Path, pool: KernelPool) -> None:
    nb_path = write_notebook(tmp_path / "probe.ipynb", PROBE, parameters="x = 0")
    pool.expect([KernelKey.of("python3", tmp_path)])
    wait_for(lambda: len(pool.ready()) == 1)
    (dead,) = pool.ready()
    os.killpg(dead, signal.SIGKILL)
    psutil.Process(dead).wait(5)  # dead, and the pool's check has not seen it yet
    seen = probe(nb_path, tmp_path / "out.ipynb")
    assert seen["pid"] != dead and not seen["left"]


def test_a_kernel_started_before_the_environment_changed_is_not_handed_out(
    tmp_path: Path, pool: KernelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb_path = write_notebook(tmp_path / "probe.ipynb", PROBE, parameters="x = 0")
    pool.expect([KernelKey.of("python3", tmp_path)])
    wait_for(lambda: len(pool.ready()) == 1)
    (stale,) = pool.ready()
    monkeypatch.setenv("FLOWAPI_TOKEN", "rotated")
    seen = probe(nb_path, tmp_path / "out.ipynb")
    assert seen["pid"] != stale and seen["token"] == "rotated"[::-1] and pool.handed_out == 0
    wait_for(lambda: stale not in kernel_children(), 10)


def test_closing_the_pool_kills_every_waiting_and_starting_kernel(tmp_path: Path, pool: KernelPool) -> None:
    before = kernel_children()
    key = KernelKey.of("python3", tmp_path)
    pool.expect([key])
    wait_for(lambda: len(pool.ready()) == 1)
    pool.expect([key, key], top_up=True)  # a guess made again: only the one missing is started
    assert pool.waiting() == 2
    pool.expect([key])  # one more notebook to come
    assert pool.waiting() == 3  # two of them are still starting when the pool closes
    close_kernel_pool()
    assert kernel_children() <= before
    assert kernel_pool() is not pool  # a closed pool is never used again


def test_a_kernel_nobody_takes_is_shut_down(tmp_path: Path, pool: KernelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_pool_module, "IDLE_SECONDS", 0.5)
    pool.expect([KernelKey.of("python3", tmp_path)])
    wait_for(lambda: len(pool.ready()) == 1)
    (idle,) = pool.ready()
    wait_for(lambda: pool.expired == 1 and idle not in kernel_children(), 15)
    assert pool.waiting() == 0


def test_the_pool_is_off_with_zero_and_a_bad_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    close_kernel_pool()
    monkeypatch.setenv("AUTOFLOW_KERNEL_POOL", "0")
    assert kernel_pool() is None
    with pytest.raises(SettingsError, match=r"^AUTOFLOW_KERNEL_POOL='many' is not a whole number of 0 or more"):
        Settings.from_env({"AUTOFLOW_KERNEL_POOL": "many"})
    assert Settings.from_env({}).kernel_pool == (os.cpu_count() or 1)


@flow(name="kernel-pool-test", persist_result=False, validate_parameters=False, task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def _workflow_run(spec: WorkflowSpec, settings: Settings) -> RunOutcome:
    day = dt.date(2016, 1, 7)
    return execute_workflow(spec, RunRequest("w", {}, day, ((day, day),), attempt_id=1), settings)


@pytest.mark.usefixtures("prefect_api_url")
def test_a_dependent_notebooks_kernel_starts_while_its_upstream_notebook_runs(tmp_path: Path, pool: KernelPool) -> None:
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "first.ipynb", "import time; time.sleep(3)", parameters="x = 0")
    write_notebook(inputs / "second.ipynb", PROBE, parameters="upstream = None")
    (inputs / "workflows.yml").write_text(
        "workflows:\n  - name: w\n    notebooks:\n"
        "      first: {filename: first.ipynb}\n"
        "      second: {filename: second.ipynb, parameters: {upstream: first}}\n"
        "available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}\n"
    )
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "out"), max_parallel_notebooks=2)
    outcome = _workflow_run(load_config(inputs).workflows["w"], settings)
    assert outcome.success, outcome.error
    first, second = (nbformat.read(p, as_version=4) for p in outcome.notebooks)
    (cell,) = [c for c in second.cells if "left_behind = 1" in c.source]
    seen = json.loads(cell.outputs[0]["text"])
    first_ended = dt.datetime.fromisoformat(first.metadata["papermill"]["end_time"]).timestamp()
    assert pool.handed_out == 1 and seen["started"] < first_ended - 1, "second's kernel was started while first ran"
    assert not seen["left"] and seen["cwd"] == str(inputs)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api_url")
def test_a_backlog_runs_every_notebook_on_a_kernel_started_ahead_and_leaves_none(tmp_path: Path) -> None:
    """One-off service, one run at a time: the first run's kernel starts with the process, each
    later run's while the run before it runs; none is wasted and none outlives the process."""
    from tests.fake_flowapi import FakeFlowAPI, date_range
    from tests.integration.test_service import Deployment

    with FakeFlowAPI({"calls": date_range(dt.date(2016, 1, 1), dt.date(2016, 1, 4))}) as flowapi:
        app = Deployment(tmp_path, "", flowapi, extra_env={"AUTOFLOW_MAX_PARALLEL_RUNS": "1", "AUTOFLOW_LOG_LEVEL": "DEBUG"})
        done = app.run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(app.executed()) == 3  # 2016-01-02, -03 and -04 (stencil [-1, 0] from earliest_date 01-02)
    assert "kernel pool closed: 3 kernels started ahead of need, 3 handed out, 0 died waiting, 0 shut down unused, 0 unused at the end" in done.stderr
    left = [p for p in psutil.process_iter(["cmdline", "cwd"]) if "ipykernel_launcher" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(app.inputs)]
    assert not left, "a kernel outlived AutoFlow"
