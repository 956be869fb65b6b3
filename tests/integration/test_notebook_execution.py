"""Notebook execution on real kernels (papermill, nbclient, ipykernel)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from autoflow.errors import NotebookExecutionError
from autoflow.notebooks import ExecutionLimits, build_parameters, execute_notebook
from autoflow.settings import Settings
from autoflow.spec.models import NotebookSpec, frozen_map
from tests.nbfactory import cell, write_notebook


def stdout_of(nb: nbformat.NotebookNode, marker: str) -> str:
    """Printed text of the one code cell whose source contains ``marker``."""
    (found,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return "".join(o["text"] for o in found.outputs if o.output_type == "stream" and o.name == "stdout")


def kernel_children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(p.cmdline())
    }


@pytest.fixture(autouse=True)
def no_kernel_left_behind() -> Any:
    before = kernel_children()
    yield
    assert kernel_children() <= before, "a kernel process is still running after execute_notebook"


TRICKY = {
    "text": 'quotes " and \' and \\ backslash\nnew line\ttab {braces} and ünïcödé 🙂',
    "empty": "",
    "integer": 12345678901234567890,
    "negative": -3,
    "ratio": 0.1,
    "whole_float": 2.0,
    "flag": False,
    "nothing": None,
    "items": [1, "two", [3.5, None], {"k": True}],
    "mapping": {"a b": 1, "quote\"key": ["x"], "nested": {"deep": "2016-01-01"}},
    "reference_date": "2016-01-07",
    "date_ranges": [["2016-01-01", "2016-01-03"], ["2016-01-04", "2016-01-04"]],
}


def test_every_injected_value_arrives_exactly(tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    defaults = "\n".join(f"{name} = None" for name in TRICKY)
    nb_path = write_notebook(
        tmp_path / "values.ipynb",
        "import json\nprint(json.dumps({n: globals()[n] for n in %r}, sort_keys=True))  # DUMP" % sorted(TRICKY),
        parameters=defaults,
    )
    out = tmp_path / "out" / "values.ipynb"
    with caplog.at_level(logging.DEBUG):
        assert execute_notebook(nb_path, out, TRICKY) == out
    printed = stdout_of(nbformat.read(out, as_version=4), "# DUMP")
    assert printed.strip() == json.dumps(TRICKY, sort_keys=True)
    # papermill/nbclient chatter goes through logging at DEBUG, never to the terminal
    papermill_records = [r for r in caplog.records if r.name.startswith("papermill")]
    assert papermill_records, "expected papermill's records to reach logging"
    assert {r.levelno for r in papermill_records} == {logging.DEBUG}
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "IPKernelApp" not in captured.err and "Executing" not in captured.err


def test_run_metadata_is_stamped(tmp_path: Path) -> None:
    nb_path = write_notebook(tmp_path / "meta.ipynb", "y = x * 2", parameters="x = 1")
    out = tmp_path / "meta.out.ipynb"
    metadata = {
        "workflow": "daily",
        "parameters": {"country": "nepal", "day": dt.date(2016, 1, 2)},
        "reference_date": dt.date(2016, 1, 7),
    }
    execute_notebook(nb_path, out, {"x": 21}, metadata=metadata)
    stamp = nbformat.read(out, as_version=4).metadata["autoflow"]
    assert stamp["workflow"] == "daily"
    assert stamp["parameters"] == {"country": "nepal", "day": "2016-01-02"}
    assert stamp["reference_date"] == "2016-01-07"
    assert stamp["status"] == "succeeded" and stamp["error"] is None
    assert stamp["autoflow_version"] not in ("", None)
    started, finished = dt.datetime.fromisoformat(stamp["started_at"]), dt.datetime.fromisoformat(stamp["finished_at"])
    assert started.tzinfo is not None and started <= finished
    assert stamp["duration_seconds"] == pytest.approx((finished - started).total_seconds(), abs=1e-3)


def test_failure_keeps_the_notebook_and_names_notebook_cell_and_path(tmp_path: Path) -> None:
    nb_path = write_notebook(
        tmp_path / "broken.ipynb",
        "md:# Title",
        "a = 1",
        "value = a / 0",
        "open('after-the-failure', 'w').close()",
        parameters="a = 0",
    )
    out = tmp_path / "out" / "broken__w.ipynb"
    with pytest.raises(NotebookExecutionError) as caught:
        execute_notebook(nb_path, out, {"a": 2}, metadata={"workflow": "w"})
    error = caught.value
    message = str(error)
    assert "\n" not in message
    assert "broken.ipynb" in message
    assert "cell 4 (In [" in message  # parameters, markdown, 'a = 1', then the failing cell
    # the failing line of code, then the exception
    assert "cell 4 (In [" in message and "), line 1: `value = a / 0` — ZeroDivisionError: division by zero; " in message
    assert str(out) in message
    assert (error.notebook, error.cell, error.output_path) == ("broken.ipynb", 4, out)

    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [e["ename"] for e in errors] == ["ZeroDivisionError"]
    assert nb.metadata["autoflow"]["status"] == "failed"
    assert nb.metadata["autoflow"]["error"] == message
    assert nb.metadata["autoflow"]["workflow"] == "w"
    assert not (tmp_path / "after-the-failure").exists()


@pytest.mark.slow
def test_whole_notebook_timeout_stops_the_kernel(tmp_path: Path) -> None:
    # every cell is short except the last, but together they exceed the budget: the budget
    # is for the whole notebook, not per cell
    nb_path = write_notebook(
        tmp_path / "slow.ipynb",
        "import os, time\nopen('kernel.pid', 'w').write(str(os.getpid()))",
        "time.sleep(2)",
        "time.sleep(2)",
        "time.sleep(600)",
        parameters="x = 1",
    )
    out = tmp_path / "slow.out.ipynb"
    with pytest.raises(NotebookExecutionError) as caught:
        execute_notebook(nb_path, out, {}, timeout=8)
    message = str(caught.value)
    assert "slow.ipynb timed out after 8 s" in message
    assert "kernel was stopped" in message and str(out) in message
    pid = int((tmp_path / "kernel.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    nb = nbformat.read(out, as_version=4)
    assert nb.metadata["autoflow"]["status"] == "failed"
    stopped = [c for c in nb.cells if any(o.get("ename") == "TimeoutError" for o in c.get("outputs", []))]
    assert len(stopped) == 1
    assert caught.value.cell is not None and caught.value.cell >= 3


def user_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, argv: list[str]) -> None:
    """A user-level kernelspec ``name`` starting ``argv``, in a Jupyter data dir under tmp_path."""
    spec_dir = tmp_path / "jupyter-data" / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))


def test_kernel_is_this_environments_python_even_with_another_python3_kernelspec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a user-level "python3" kernelspec pointing elsewhere, found before the environment's own
    # (as it is outside a virtualenv, or with JUPYTER_PREFER_ENV_PATH=0)
    user_kernelspec(tmp_path, monkeypatch, "python3", ["/bin/false", "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    nb_path = write_notebook(tmp_path / "which.ipynb", "import sys\nprint(sys.executable, sys.prefix)  # WHICH")
    out = tmp_path / "which.out.ipynb"
    execute_notebook(nb_path, out, {})
    executable, prefix = stdout_of(nbformat.read(out, as_version=4), "# WHICH").split()
    assert executable == sys.executable
    assert prefix == sys.prefix
    assert Path(sys.prefix).name == ".venv"


@pytest.mark.slow
def test_scrapbook_glue_is_read_by_a_downstream_notebook(tmp_path: Path) -> None:
    first = write_notebook(
        tmp_path / "inputs" / "run_flows.ipynb",
        "import scrapbook as sb\nsb.glue('query_ids', ['abc', 'def'])\nsb.glue('total', 42)",
        parameters="reference_date = None",
    )
    second = write_notebook(
        tmp_path / "inputs" / "report.ipynb",
        "import json, scrapbook as sb\n"
        "scraps = sb.read_notebook(first_notebook).scraps\n"
        "print(json.dumps([scraps['query_ids'].data, scraps['total'].data, reference_date]))  # READ",
        parameters="first_notebook = None\nreference_date = None",
    )
    specs = {
        "run_flows": NotebookSpec("run_flows", first.name, first, frozen_map({"reference_date": "reference_date"})),
        "report": NotebookSpec(
            "report", second.name, second, frozen_map({"first_notebook": "run_flows", "reference_date": "reference_date"})
        ),
    }
    outputs: dict[str, Path] = {}
    for label, notebook in specs.items():
        values = build_parameters(
            notebook,
            workflow_parameters={},
            reference_date=dt.date(2016, 1, 7),
            date_ranges=[],
            flowapi_url=None,
            upstream_paths=outputs,
        )
        outputs[label] = execute_notebook(notebook.path, tmp_path / "outputs" / f"{label}.ipynb", values)
    printed = stdout_of(nbformat.read(outputs["report"], as_version=4), "# READ")
    assert json.loads(printed) == [["abc", "def"], 42, "2016-01-07"]


def test_concurrent_notebooks_each_run_in_their_own_directory(tmp_path: Path) -> None:
    # the working directory is the kernel's, not the process's: threads do not disturb each other
    code = "import os\nprint(os.getcwd())  # CWD"
    default_dir = tmp_path / "default"
    given_dir = tmp_path / "given"
    given_dir.mkdir()
    one = write_notebook(default_dir / "one.ipynb", code)
    two = write_notebook(tmp_path / "elsewhere" / "two.ipynb", code)
    process_cwd = os.getcwd()
    failures: list[BaseException] = []

    def run(src: Path, out: Path, cwd: Path | None) -> None:
        try:
            execute_notebook(src, out, {}, cwd=cwd)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(one, tmp_path / "o" / "one.ipynb", None)),
        threading.Thread(target=run, args=(two, tmp_path / "o" / "two.ipynb", given_dir)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert stdout_of(nbformat.read(tmp_path / "o" / "one.ipynb", as_version=4), "# CWD").strip() == str(default_dir)
    assert stdout_of(nbformat.read(tmp_path / "o" / "two.ipynb", as_version=4), "# CWD").strip() == str(given_dir)
    assert os.getcwd() == process_cwd


def test_braces_in_paths_are_kept_literally(tmp_path: Path) -> None:
    nb_path = write_notebook(tmp_path / "{x}" / "in{x}.ipynb", "print(x)  # X", parameters="x = 0")
    out = tmp_path / "{x}" / "out{x}.ipynb"
    execute_notebook(nb_path, out, {"x": 5})
    assert stdout_of(nbformat.read(out, as_version=4), "# X").strip() == "5"
    assert not (tmp_path / "5").exists()


def test_a_notebook_without_a_parameters_cell_is_not_run_with_overwritten_values(tmp_path: Path) -> None:
    # the parameters tag was removed: papermill would inject 2024-03-09 at the top, then the
    # notebook's own assignment would put 5 March back
    nb_path = write_notebook(tmp_path / "untagged.ipynb", "reference_date = '2024-03-05'", "print(reference_date)  # DATE")
    out = tmp_path / "out" / "untagged.ipynb"
    with pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(nb_path, out, {"reference_date": "2024-03-09"})
    message = str(failure.value)
    assert message.startswith(f"notebook {nb_path} has no cell tagged 'parameters': ")
    assert "tag the code cell that assigns its parameters' defaults" in message and "\n" not in message
    assert failure.value.retryable is False, "running it again cannot help"
    assert not out.exists(), "nothing was executed"
    # with nothing to inject, the tag does not matter: it runs as written
    execute_notebook(nb_path, out, {})
    assert stdout_of(nbformat.read(out, as_version=4), "# DATE") == "2024-03-05\n"


def test_a_parameters_tag_on_a_markdown_cell_is_not_a_parameters_cell(tmp_path: Path) -> None:
    # papermill injects after the first tagged cell of any type: here, before the defaults,
    # which would put 5 March back
    nb_path = write_notebook(
        tmp_path / "heading.ipynb",
        cell("md:## Parameters", tags=("parameters",)),
        "reference_date = '2024-03-05'",
        cell("reference_date = None", tags=("parameters",)),  # tagged too, but papermill uses the first
        "print(reference_date)  # DATE",
    )
    out = tmp_path / "out" / "heading.ipynb"
    with pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(nb_path, out, {"reference_date": "2024-03-09"})
    message = str(failure.value)
    assert message.startswith(f"notebook {nb_path} has its 'parameters' tag on a markdown cell: "), message
    assert "tag the code cell that assigns its parameters' defaults 'parameters', not a markdown cell" in message
    assert failure.value.retryable is False and not out.exists()


def test_unreadable_notebook_is_a_notebook_execution_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ this is not json")
    with pytest.raises(NotebookExecutionError, match=r"bad\.ipynb was not run: cannot read .*valid \.ipynb") as caught:
        execute_notebook(bad, tmp_path / "out.ipynb", {})
    assert caught.value.output_path is None


def test_missing_notebook_is_a_notebook_execution_error(tmp_path: Path) -> None:
    with pytest.raises(NotebookExecutionError, match="does not exist"):
        execute_notebook(tmp_path / "nope.ipynb", tmp_path / "out.ipynb", {})


def test_unknown_kernel_is_a_notebook_execution_error(tmp_path: Path) -> None:
    nb_path = write_notebook(tmp_path / "k.ipynb", "print(1)")
    with pytest.raises(NotebookExecutionError, match="no Jupyter kernel named 'no-such-kernel'") as caught:
        execute_notebook(nb_path, tmp_path / "k.out.ipynb", {}, kernel_name="no-such-kernel")
    assert "\n" not in str(caught.value)


def test_kernel_death_is_a_notebook_execution_error_naming_the_cell(tmp_path: Path) -> None:
    nb_path = write_notebook(tmp_path / "dies.ipynb", "x = 1", "import os\nos._exit(1)", "print('never')")
    out = tmp_path / "dies.out.ipynb"
    with pytest.raises(NotebookExecutionError) as caught:
        execute_notebook(nb_path, out, {})
    message = str(caught.value)
    assert "dies.ipynb" in message and "kernel died" in message and "cell 2" in message and str(out) in message
    assert caught.value.cell == 2
    assert nbformat.read(out, as_version=4).metadata["autoflow"]["status"] == "failed"


def test_secrets_printed_by_a_notebook_are_redacted_from_the_output_and_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token = "eyJ-distinctive-token-4a1f9c"
    password = "db-pass-7Qx!2z"
    monkeypatch.setenv("FLOWAPI_TOKEN", token)
    monkeypatch.setenv("AUTOFLOW_SECRETS_DIR", str(tmp_path / "secrets"))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "AUTOFLOW_DB_PASSWORD").write_text(password + "\n")
    notebook = write_notebook(
        tmp_path / "leaky.ipynb",
        "import os\nprint('token is', os.environ['FLOWAPI_TOKEN'])",
        f"print({{'nested': ['{password}']}})",
        "raise RuntimeError('401 with Authorization: Bearer ' + os.environ['FLOWAPI_TOKEN'])",
        parameters="x = 1",
    )
    output = tmp_path / "out" / "leaky.ipynb"
    with caplog.at_level(logging.DEBUG, logger="autoflow"), pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(notebook, output, {})
    saved = output.read_text()
    assert token not in saved and password not in saved
    assert "token is [FLOWAPI_TOKEN redacted]" in saved and "[AUTOFLOW_DB_PASSWORD redacted]" in saved
    assert token not in str(failure.value) and "Bearer [FLOWAPI_TOKEN redacted]" in str(failure.value)
    assert token not in caplog.text and password not in caplog.text
    assert "wrote AUTOFLOW_DB_PASSWORD and FLOWAPI_TOKEN into its output" in caplog.text


FLAKY_KERNEL = """\
import os, pathlib, sys
starts = pathlib.Path(sys.argv[1])
starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
if len(starts.read_text()) <= int(sys.argv[2]):
    os._exit(1)  # dies before answering kernel_info, as a kernel whose port was taken does
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *sys.argv[3:]])
"""


def flaky_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int) -> Path:
    """A kernelspec 'flaky' whose first ``failures`` kernels die at once; returns the start counter."""
    script, starts = tmp_path / "flaky_kernel.py", tmp_path / "starts"
    script.write_text(FLAKY_KERNEL)
    user_kernelspec(tmp_path, monkeypatch, "flaky", [sys.executable, str(script), str(starts), str(failures), "-f", "{connection_file}"])
    return starts


@pytest.mark.slow
def test_a_kernel_that_dies_while_starting_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    starts = flaky_kernelspec(tmp_path, monkeypatch, failures=1)
    nb_path = write_notebook(tmp_path / "once.ipynb", "print('ran')  # ONCE", parameters="x = 1")
    out = tmp_path / "once.out.ipynb"
    with caplog.at_level(logging.WARNING, logger="autoflow"):
        execute_notebook(nb_path, out, {"x": 2}, kernel_name="flaky")
    assert starts.read_text() == "xx"
    assert stdout_of(nbformat.read(out, as_version=4), "# ONCE") == "ran\n"
    assert "its kernel died while starting" in caplog.text and "try 2 of 3" in caplog.text


@pytest.mark.slow
def test_a_kernel_that_never_starts_fails_after_three_tries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    starts = flaky_kernelspec(tmp_path, monkeypatch, failures=99)
    nb_path = write_notebook(tmp_path / "never.ipynb", "print('ran')", parameters="x = 1")
    with pytest.raises(NotebookExecutionError, match="never.ipynb") as failure:
        execute_notebook(nb_path, tmp_path / "never.out.ipynb", {}, kernel_name="flaky")
    assert starts.read_text() == "xxx"
    assert "kernel" in str(failure.value).lower()


# kernels that never start: each try must end within AUTOFLOW_KERNEL_START_TIMEOUT, whatever they do
EXITS_AT_ONCE = "import sys\nprint('cannot start: no licence', file=sys.stderr)\nsys.exit(3)\n"
HANGS_BEFORE_BINDING = "import time\ntime.sleep(3600)\n"
BINDS_BUT_NEVER_ANSWERS = """\
import json, sys, time
import zmq
info = json.load(open(sys.argv[-1]))
context = zmq.Context()
url = f"{info['transport']}://{info['ip']}:"
sockets = [context.socket(kind) for kind in (zmq.ROUTER, zmq.ROUTER, zmq.ROUTER, zmq.PUB, zmq.REP)]
for sock, port in zip(sockets, ("shell_port", "control_port", "stdin_port", "iopub_port", "hb_port")):
    sock.bind(url + str(info[port]))
time.sleep(3600)  # requests queue up unanswered
"""


def fake_kernel_processes(marker: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and marker in " ".join(p.cmdline())
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)  # with the default 60 s bound, one try at the hanging kernels alone takes longer
@pytest.mark.parametrize(
    "behaviour, script, reason",
    [
        ("exits", EXITS_AT_ONCE, "it exited before answering (its last output: cannot start: no licence)"),
        ("hangs", HANGS_BEFORE_BINDING, "it did not answer within 3 s"),
        ("mute", BINDS_BUT_NEVER_ANSWERS, "it did not answer within 3 s"),
    ],
    ids=["exits-at-once", "hangs-before-binding", "binds-but-never-answers"],
)
def test_a_kernel_that_never_starts_ends_the_notebook_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str, script: str, reason: str
) -> None:
    kernel = tmp_path / f"{behaviour}_kernel.py"
    kernel.write_text(script)
    user_kernelspec(tmp_path, monkeypatch, behaviour, [sys.executable, str(kernel), "{connection_file}"])
    monkeypatch.setenv("AUTOFLOW_KERNEL_START_TIMEOUT", "3")
    limits = ExecutionLimits.from_settings(Settings.from_env())
    nb_path = write_notebook(tmp_path / "never.ipynb", "print('ran')", parameters="x = 1")
    out = tmp_path / "never.out.ipynb"
    with pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(nb_path, out, {"x": 2}, limits=limits, kernel_name=behaviour)
    message = str(failure.value)
    # a kernel's own last words are added when it printed any (e.g. a port taken meanwhile, on a busy machine)
    assert re.match(rf"the kernel of notebook never\.ipynb did not start within 3 s \(3 tries\): {re.escape(reason)}( \(its last output: .*\))?; ", message), message
    assert "\n" not in message and str(out) in message
    assert nbformat.read(out, as_version=4).metadata["autoflow"]["error"] == message
    assert fake_kernel_processes(str(kernel)) == [], "a kernel that did not start is still running"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_notebook_timeout_shorter_than_the_kernel_start_bound_ends_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "hangs_kernel.py"
    kernel.write_text(HANGS_BEFORE_BINDING)
    user_kernelspec(tmp_path, monkeypatch, "hangs", [sys.executable, str(kernel), "{connection_file}"])
    nb_path = write_notebook(tmp_path / "short.ipynb", "print('ran')")
    with pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(nb_path, tmp_path / "short.out.ipynb", {}, timeout=2, kernel_name="hangs")  # start bound: 60 s
    assert "short.ipynb timed out after 2 s while its kernel was starting; the kernel was stopped" in str(failure.value)
    assert fake_kernel_processes(str(kernel)) == []


@pytest.fixture
def blocked_kernel_info(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make ``Session.send`` block its thread for good on kernel_info requests (with ``after_cells``,
    only once a cell was sent): a plain blocking call, which no bound kept by the kernel client's own
    event loop can end."""
    from jupyter_client.session import Session

    release, executed = threading.Event(), threading.Event()
    original = Session.send

    def block(*, after_cells: bool) -> None:
        def send(self: Session, stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
            kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type.get("header", {}).get("msg_type")
            if kind == "execute_request":
                executed.set()
            elif kind == "kernel_info_request" and (executed.is_set() or not after_cells):
                release.wait(600)
            return original(self, stream, msg_or_type, *args, **kwargs)

        monkeypatch.setattr(Session, "send", send)

    yield block
    release.set()  # the abandoned threads end with the test


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_kernel_client_blocked_in_a_send_still_ends_within_the_start_bound(
    tmp_path: Path, blocked_kernel_info: Any, caplog: pytest.LogCaptureFixture
) -> None:
    blocked_kernel_info(after_cells=False)  # issue 11: the thread blocked in zmq's send under kernel_info, for good
    nb_path = write_notebook(tmp_path / "blocked.ipynb", "print('ran')", parameters="x = 1")
    out = tmp_path / "blocked.out.ipynb"
    limits = ExecutionLimits(kernel_start_timeout=2)
    with caplog.at_level(logging.WARNING, logger="autoflow"), pytest.raises(NotebookExecutionError) as failure:
        execute_notebook(nb_path, out, {"x": 2}, limits=limits)
    message = str(failure.value)
    assert message.startswith("the kernel of notebook blocked.ipynb did not start within 2 s (3 tries): "), message
    assert nbformat.read(out, as_version=4).metadata["autoflow"]["error"] == message
    assert "left thread autoflow-notebook-blocked.ipynb behind, blocked in " in caplog.text
    assert kernel_children() == set(), "the blocked tries' kernels are still running"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_kernel_client_blocked_after_the_last_cell_ends_within_the_notebook_timeout(
    tmp_path: Path, blocked_kernel_info: Any
) -> None:
    blocked_kernel_info(after_cells=True)  # papermill's closing kernel_info, after the last cell, blocks
    nb_path = write_notebook(tmp_path / "closing.ipynb", "print('ran')  # RAN", parameters="x = 1")
    out = tmp_path / "closing.out.ipynb"
    # 10 s: time for the kernel to start and the cell to run even on a busy machine, before the closing call blocks
    with pytest.raises(NotebookExecutionError, match=r"closing\.ipynb timed out after 10 s"):
        execute_notebook(nb_path, out, {"x": 2}, timeout=10)
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata["autoflow"]["status"] == "failed"
    assert stdout_of(nb, "# RAN") == "ran\n"
    assert kernel_children() == set()
