"""A failed notebook run as one line: which cell, what went wrong, where the executed copy is.

Translates papermill's, nbclient's and jupyter_client's exceptions into
:class:`~autoflow.errors.NotebookExecutionError`, and records the failure in the kept notebook.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import NoSuchKernel
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError

from autoflow.errors import NotebookExecutionError
from autoflow.notebooks.engine import Budget
from autoflow.notebooks.kernels import KernelStartFailed
from autoflow.redaction import Redactor

log = logging.getLogger("autoflow.notebooks")

#: papermill tags these cells; they are not part of the notebook the user wrote
INJECTED_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})


def _autoflow_version() -> str:
    try:
        return importlib.metadata.version("autoflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, without terminal colours, at most ``limit`` characters."""
    text = ANSI.sub("", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: a frame of IPython's traceback in a notebook cell: "Cell In[3], line 4"
CELL_FRAME = re.compile(r"^\s*Cell In\[(\d+)\], line (\d+)")
#: the marked line of a frame: "----> 4 total = calls / days"
MARKED_LINE = re.compile(r"^-*> ?\s*\d+ (.*)$")


def _failing_line(traceback_lines: list[str], exec_count: int | None) -> str | None:
    """``line 4: `total = calls / days` `` from an IPython traceback: the last frame in the notebook's code.

    A frame in another cell (a function defined there) says which: ``at line 3 of In [2]: `...` ``.
    """
    found = None
    for entry in traceback_lines or []:
        lines = ANSI.sub("", str(entry)).splitlines()
        frame = CELL_FRAME.match(lines[0]) if lines else None
        if frame is None:
            continue
        code = next((m.group(1) for m in map(MARKED_LINE.match, lines[1:]) if m), None)
        if code is None:  # a SyntaxError: the code follows the header, then a caret line
            code = next((text for text in lines[1:] if text.strip() and text.strip("^ ")), None)
        if code is None or not code.strip():
            continue
        count, number = int(frame.group(1)), frame.group(2)
        place = f"line {number}" if count == exec_count else f"at line {number} of In [{count}]"
        found = f"{place}: `{one_line(code.strip(), 120)}`"
    return found


def _read(path: Path) -> nbformat.NotebookNode | None:
    try:
        nb: nbformat.NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        return nb
    except Exception:  # noqa: BLE001 - the copy on disk is best effort once a run has failed
        return None


def _user_cells(nb: nbformat.NotebookNode) -> list[Any]:
    """The cells of the notebook as the user wrote it (without papermill's injected cells)."""
    return [c for c in nb.cells if not INJECTED_TAGS & set(c.get("metadata", {}).get("tags", []))]


def _locate(nb: nbformat.NotebookNode | None, cell: Any) -> tuple[int | None, str]:
    """(1-based number in the user's notebook, ``"cell N (In [k])"``) of ``cell`` in ``nb``."""
    if nb is None or cell is None:
        return None, "an unknown cell"
    for number, candidate in enumerate(_user_cells(nb), start=1):
        if candidate is cell or (candidate.get("id") is not None and candidate.get("id") == cell.get("id")):
            count = candidate.get("execution_count")
            return number, f"cell {number}" + (f" (In [{count}])" if count is not None else "")
    return None, "an unknown cell"


def _failed_cell(nb: nbformat.NotebookNode | None) -> Any:
    if nb is None:
        return None
    return next((c for c in _user_cells(nb) if c.get("metadata", {}).get("papermill", {}).get("exception")), None)


def _mark_stopped(nb: nbformat.NotebookNode, cell: Any, message: str, ename: str = "TimeoutError") -> None:
    """Record in the saved notebook that ``cell`` was stopped (papermill leaves no trace of it)."""
    cell.setdefault("outputs", []).append(
        nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])  # type: ignore[no-untyped-call]
    )
    cell.setdefault("metadata", {}).setdefault("papermill", {}).update(exception=True, status="failed")
    nb.metadata.setdefault("papermill", {})["exception"] = True


def _has_error(cell: Any) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))


@dataclass(frozen=True)
class NotebookRun:
    """One execution of a notebook: what failure messages and the stamp need to know."""

    input_path: Path
    output_path: Path
    budget: Budget
    record: Mapping[str, Any]
    started: dt.datetime
    redactor: Redactor
    #: why the notebook's run attempt was cancelled, if it was (``autoflow cancel``)
    cancelled: str | None = None

    @property
    def name(self) -> str:
        return self.input_path.name


def stamp(nb: nbformat.NotebookNode, run: NotebookRun, error: str | None) -> None:
    """Redact ``nb``, stamp the run's record and timings into its metadata, and write it."""
    found = run.redactor.notebook(nb)
    if found:
        log.warning(
            "notebook %s wrote %s into its output; AutoFlow removed it from the saved notebook",
            run.name, " and ".join(sorted(found)),
        )  # fmt: skip
    finished = dt.datetime.now(dt.timezone.utc)
    nb.metadata["autoflow"] = {
        **run.record,
        "autoflow_version": _autoflow_version(),
        "started_at": run.started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_seconds": round((finished - run.started).total_seconds(), 6),
        "status": "failed" if error else "succeeded",
        "error": error,
    }
    nbformat.write(nb, run.output_path)  # type: ignore[no-untyped-call]


def _running_cell(nb: nbformat.NotebookNode | None, budget: Budget, current: Any = None) -> Any:
    """The cell of ``nb`` that was running when execution stopped (or the copy in ``nb`` of ``current``)."""
    current = current if current is not None else budget.current_cell
    if nb is None or current is None:
        return None
    return next((c for c in _user_cells(nb) if c.get("id") is not None and c.get("id") == current.get("id")), None)


def failure(exc: Exception | None, run: NotebookRun, *, tries: int = 1) -> NotebookExecutionError:
    """The :class:`NotebookExecutionError` for ``exc``, after recording it in the kept notebook."""
    name, input_path, output_path, budget = run.name, run.input_path, run.output_path, run.budget
    nb = _read(output_path) if output_path.exists() else None
    if nb is None:
        # papermill writes the output before starting the kernel: nothing there means the
        # input could not be read as a notebook
        return NotebookExecutionError(
            f"notebook {name} was not run: cannot read {input_path} as a notebook "
            f"({type(exc).__name__}: {one_line(str(exc), 200)}); check that it is a valid .ipynb file",
            notebook=name,
        )
    kept = f"the executed notebook is kept at {output_path}"
    number: int | None = None
    if run.cancelled is not None:  # first: the interrupt that stopped it looks like any error
        cell = _running_cell(nb, budget)
        number, where = _locate(nb, cell)
        where = "while its kernel was starting" if budget.current_cell is None else f"in {where}"
        if cell is not None and not _has_error(cell):
            _mark_stopped(nb, cell, f"AutoFlow stopped the notebook: {run.cancelled}", "Cancelled")
        message = f"notebook {name} was cancelled {where}: {run.cancelled}; its kernel was interrupted and shut down; {kept}"
    elif budget.output_exceeded:  # checked first: the interrupt that stopped it looks like any error
        cell = _running_cell(nb, budget, budget.output_cell)
        number, where = _locate(nb, cell)
        limit = f"{(budget.max_output_bytes or 0) / 2**20:g} MB"
        if cell is not None:
            _mark_stopped(nb, cell, f"AutoFlow interrupted the notebook: its output passed {limit}", "OutputLimitExceeded")
        message = (
            f"notebook {name} wrote more than {limit} of output (in {where}), so AutoFlow interrupted it: print "
            f"less, or write large results to files (AUTOFLOW_MAX_OUTPUT_MB raises the limit); {kept}"
        )
    elif isinstance(exc, PapermillExecutionError):
        number, where = _locate(nb, _failed_cell(nb))
        if number is None:
            where = f"cell In [{exc.exec_count}]"
        what = one_line(f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename)
        line = _failing_line(exc.traceback, exc.exec_count)
        if line is None:
            message = f"notebook {name} failed in {where} with {what}; {kept}"
        else:
            message = f"notebook {name} failed in {where}, {line} — {what}; {kept}"
    elif budget.expired():  # nbclient's CellTimeoutError, or a kernel that started too late
        cell = _running_cell(nb, budget)
        number, where = _locate(nb, cell)
        if budget.current_cell is None:
            where = "while its kernel was starting"
        else:
            where = f"in {where}"
        if cell is not None:
            _mark_stopped(nb, cell, f"AutoFlow stopped the notebook after its timeout of {budget.seconds:g} s")
        message = f"notebook {name} timed out after {budget.seconds:g} s {where}; the kernel was stopped; {kept}"
    elif isinstance(exc, KernelStartFailed):
        message = (
            f"the kernel of notebook {name} did not start within {exc.seconds:g} s "
            f"({tries} {'try' if tries == 1 else 'tries'}): {exc.reason}; check that the notebook's kernel "
            f"starts on this machine (jupyter kernelspec list), or raise AUTOFLOW_KERNEL_START_TIMEOUT "
            f"if it is only slow; {kept}"
        )
    elif isinstance(exc, DeadKernelError):
        number, where = _locate(nb, _running_cell(nb, budget))
        message = (
            f"notebook {name}: the kernel died while running {where} (out of memory, or the process "
            f"was killed?); {kept}"
        )
    elif isinstance(exc, NoSuchKernel):
        message = (
            f"notebook {name} was not run: there is no Jupyter kernel named {exc.name!r}; "
            f"install it or use the 'python3' kernel; {kept}"
        )
    else:
        message = f"notebook {name} failed: {type(exc).__name__}: {one_line(str(exc), 200)}; {kept}"
    message = run.redactor.text(message)  # the error goes to the log, the run history and the notebook
    if exc is not None and log.isEnabledFor(logging.DEBUG):
        log.debug("notebook %s failed:\n%s", name, run.redactor.text("".join(traceback.format_exception(exc)).rstrip()))
    try:
        stamp(nb, run, message)
    except OSError:
        log.warning("could not record the failure in %s", output_path)
    return NotebookExecutionError(message, notebook=name, output_path=output_path, cell=number)
