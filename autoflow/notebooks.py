"""Notebook parameters, output names, and execution with papermill on a real kernel.

papermill and nbclient stay behind this module: callers get :class:`NotebookExecutionError`,
never their exceptions, and their log records arrive through :mod:`logging` at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import importlib.metadata
import json
import logging
import os
import re
import tempfile
import time
import traceback
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import nbformat
import papermill
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import _loop as _jupyter_loop  # run_sync's "current" event loop: a context variable
from jupyter_core.utils import ensure_async
from nbclient.exceptions import DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.utils import merge_kwargs, remove_args
from traitlets import default

from autoflow.errors import NotebookExecutionError, UsageError
from autoflow.parameters import params_hash, to_json_safe
from autoflow.settings import DEFAULT_SECRETS_DIR, SECRET_NAMES, read_secret
from autoflow.spec.models import NotebookSpec

__all__ = ["build_parameters", "execute_notebook", "output_stem"]

log = logging.getLogger(__name__)

#: papermill tags these cells; they are not part of the notebook the user wrote
INJECTED_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})
#: AutoFlow's own secrets and settings a notebook has no business reading
KERNEL_HIDDEN_VARIABLES = ("AUTOFLOW_DB_PASSWORD", "AUTOFLOW_DB_URI", "PREFECT_API_KEY")
#: seconds a kernel may take to start, unless the whole-notebook budget is shorter
KERNEL_START_TIMEOUT = 60.0
#: tries at starting a notebook's kernel: one that dies before answering (e.g. a port another
#: process took between jupyter_client choosing it and the kernel binding it) ran no code yet
KERNEL_START_ATTEMPTS = 3
#: output (text, images, ...) one notebook may produce, unless AUTOFLOW_MAX_OUTPUT_MB says otherwise
DEFAULT_MAX_OUTPUT_BYTES = 50 * 2**20

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# parameters and names (pure)


def build_parameters(
    notebook: NotebookSpec,
    *,
    workflow_parameters: Mapping[str, Any],
    reference_date: dt.date,
    date_ranges: Sequence[tuple[dt.date, dt.date]],
    flowapi_url: str | None,
    upstream_paths: Mapping[str, Path],
) -> dict[str, Any]:
    """The JSON-safe values to inject into ``notebook``, one per entry of its ``parameters``.

    Each reference is, in this order: an upstream notebook's label (its executed path, absolute),
    ``reference_date`` (ISO string), ``date_ranges`` (``[[start, end], ...]`` ISO strings),
    ``flowapi_url``, or a workflow parameter (made JSON-safe). Raises :class:`UsageError` for a
    reference that is none of these.
    """
    automatic: dict[str, Any] = {
        "reference_date": reference_date.isoformat(),
        "date_ranges": [[start.isoformat(), end.isoformat()] for start, end in date_ranges],
        "flowapi_url": flowapi_url,
    }
    values: dict[str, Any] = {}
    for name, ref in notebook.parameters.items():
        if ref in upstream_paths:
            values[name] = str(Path(upstream_paths[ref]).absolute())
        elif ref in automatic:
            values[name] = automatic[ref]
        elif ref in workflow_parameters:
            try:
                values[name] = to_json_safe(workflow_parameters[ref])
            except TypeError as exc:
                raise UsageError(
                    f"workflow parameter {ref!r} (for {name!r} of notebook {notebook.label!r}) "
                    f"cannot be passed to a notebook: {exc}; use text, numbers, dates, lists or mappings"
                ) from None
        else:
            raise UsageError(
                f"notebook {notebook.label!r} needs {ref!r} for its parameter {name!r}, but no value "
                f"was given; add {ref!r} to the workflow's parameters"
            )
    return values


def _filename_part(text: str, *, limit: int = 80) -> str:
    """``text`` as a safe piece of a file name: ASCII letters, digits, ``.``, ``-``, single ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    safe = re.sub(r"_{2,}", "_", safe).strip("-._")
    return safe[:limit].rstrip("-._") or "x"


def output_stem(
    notebook_filename: str,
    workflow: str,
    reference_date: dt.date,
    parameters: Mapping[str, Any],
    started_at: dt.datetime,
) -> str:
    """``<notebook>__<workflow>__<YYYY-MM-DD>__<params hash[:8]>__<UTC time>`` for an output file.

    Both names are made filename-safe (and never contain ``__``, the field separator).
    ``started_at`` must be timezone-aware; it is written in UTC with microseconds.
    """
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError("started_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
    stamp = started_at.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return "__".join(
        (
            _filename_part(Path(notebook_filename).stem),
            _filename_part(workflow),
            reference_date.isoformat(),
            params_hash(parameters)[:8],
            stamp,
        )
    )


# ---------------------------------------------------------------------------------------------
# kernels


class _EnvironmentKernelSpecManager(KernelSpecManager):
    """Kernel specs in which ``python3`` is always this environment's own Python.

    Without this, a ``python3`` kernelspec found earlier on the Jupyter path (the user's own,
    outside a virtualenv, or anything on ``JUPYTER_PATH``) could run notebooks with another
    interpreter and other packages.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == NATIVE_KERNEL_NAME:
            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


class _EnvironmentKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, using :class:`_EnvironmentKernelSpecManager`.

    The kernel process's own stdout/stderr (its start-up warnings, not the notebook's output,
    which arrives as cell outputs) go to ``kernel_output`` instead of AutoFlow's terminal.
    """

    kernel_output: IO[bytes] | None = None

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _EnvironmentKernelSpecManager(data_dir=self.data_dir)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        # Notebooks need FLOWAPI_TOKEN (they connect to FlowAPI themselves), never the database.
        env = dict(kw.get("env") or os.environ)
        for name in KERNEL_HIDDEN_VARIABLES:
            env.pop(name, None)
        kw["env"] = env
        if self.kernel_output is not None:
            kw.setdefault("stdout", self.kernel_output)
            kw.setdefault("stderr", self.kernel_output)
        await super()._async_launch_kernel(kernel_cmd, **kw)


class _DemoteToDebug(logging.Filter):
    """Re-levels papermill's and nbclient's chatter to DEBUG; AutoFlow reports what matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_papermill_log = logging.getLogger("papermill")  # nbclient logs here too, papermill passes it
if not any(isinstance(f, _DemoteToDebug) for f in _papermill_log.filters):
    _papermill_log.addFilter(_DemoteToDebug())


class _Budget:
    """The whole-notebook budgets (time, output size), and which cell is running (nbclient's ``timeout_func``)."""

    def __init__(self, seconds: float | None, max_output_bytes: int | None = None) -> None:
        self.seconds = seconds
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self.current_cell: Any = None
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        #: set once the notebook's output passed ``max_output_bytes`` (later output is dropped)
        self.output_exceeded = False
        self.output_cell: Any = None

    def remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def __call__(self, cell: Any) -> float | None:
        self.current_cell = cell
        left = self.remaining()
        # nbclient treats 0 as "no timeout", so an exhausted budget must still be positive
        return None if left is None else max(left, 0.001)


class _BoundedClient(PapermillNotebookClient):
    """papermill's notebook client, interrupting the kernel once the output passes its budget.

    A notebook printing in a loop would otherwise grow AutoFlow's memory without bound (every
    output is held until the notebook is saved) and could take the whole service down.
    """

    budget: _Budget

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        budget, limit = self.budget, self.budget.max_output_bytes
        if budget.output_exceeded:
            return None
        content = msg.get("content", {})
        used = budget.output_bytes
        budget.output_bytes += len(json.dumps(content, default=str))
        if limit is not None and budget.output_bytes > limit:
            budget.output_exceeded, budget.output_cell = True, budget.current_cell
            asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
            text = content.get("text")
            if msg.get("msg_type") != "stream" or not isinstance(text, str) or used >= limit:
                return None
            msg = {**msg, "content": {**content, "text": text[: limit - used]}}  # keep what fits
        return super().output(outs, msg, display_id, cell_index)


class _Engine(NBClientEngine):
    """papermill's nbclient engine with :class:`_BoundedClient`; registered as ``autoflow``."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        budget = kwargs.pop("autoflow_budget")
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        client = _BoundedClient(
            nb_man,
            **merge_kwargs(
                kwargs, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                log=logging.getLogger("papermill"), log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
            ),
        )  # fmt: skip
        client.budget = budget
        return client.execute()


papermill_engines.register("autoflow", _Engine)

def _with_own_event_loop(function: Callable[[], T]) -> T:
    """``function()`` with an event loop of its own for jupyter_core, closed afterwards.

    Prefect runs each task in a copy of its flow's context: without this, every notebook left
    an unclosed event loop behind (three file descriptors each, until the service ran out), and
    notebooks running at once could share one inherited loop ("This event loop is already running").
    """
    context = contextvars.copy_context()
    context.run(_jupyter_loop.set, None)
    try:
        return context.run(function)
    finally:
        loop = context.get(_jupyter_loop)
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.close()
            asyncio.set_event_loop(None)


# ---------------------------------------------------------------------------------------------
# execution


def _autoflow_version() -> str:
    try:
        return importlib.metadata.version("autoflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _literal_path(path: Path) -> str:
    # papermill str.format()s paths with the parameters; braces in a path must stay braces
    return str(path).replace("{", "{{").replace("}", "}}")


def _one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read(path: Path) -> nbformat.NotebookNode | None:
    try:
        nb: nbformat.NotebookNode = nbformat.read(path, as_version=4)
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
        nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])
    )
    cell.setdefault("metadata", {}).setdefault("papermill", {}).update(exception=True, status="failed")
    nb.metadata.setdefault("papermill", {})["exception"] = True


#: secrets shorter than this are not searched for in outputs (they would match ordinary text)
MIN_REDACTED_SECRET_LENGTH = 8


def _secret_values() -> dict[str, str]:
    """NAME -> value of the secrets AutoFlow knows (FLOWAPI_TOKEN, AUTOFLOW_DB_PASSWORD)."""
    secrets_dir = Path(os.environ.get("AUTOFLOW_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    found = {}
    for name in SECRET_NAMES:
        try:
            secret = read_secret(name, os.environ, secrets_dir)
        except Exception:  # noqa: BLE001 - unreadable: the settings check reports it, not this
            continue
        if secret is not None and len(secret.get()) >= MIN_REDACTED_SECRET_LENGTH:
            found[name] = secret.get()
    return found


def _redact(node: Any, secrets: Mapping[str, str], found: set[str]) -> Any:
    """``node`` (a notebook or part of one) with every secret value replaced by ``[NAME redacted]``."""
    if isinstance(node, str):
        for name, value in secrets.items():
            if value in node:
                node = node.replace(value, f"[{name} redacted]")
                found.add(name)
        return node
    if isinstance(node, list):
        return [_redact(item, secrets, found) for item in node]
    if isinstance(node, dict):
        for key in list(node):
            node[key] = _redact(node[key], secrets, found)
    return node


def redact_text(text: str) -> str:
    """``text`` with every known secret value replaced by ``[NAME redacted]``."""
    return str(_redact(text, _secret_values(), set()))


def redact_secrets(nb: nbformat.NotebookNode, name: str) -> None:
    """Remove FLOWAPI_TOKEN and the database password from ``nb``'s outputs, in place.

    Kernels see FLOWAPI_TOKEN (notebooks query FlowAPI with it), so a notebook that prints its
    environment, or a library that puts the Authorization header into an error message, would
    otherwise write the token into the saved notebook and, from there, into PDF reports.
    """
    secrets = _secret_values()
    if not secrets:
        return
    text = json.dumps(nb, default=str)
    if not any(value in text or json.dumps(value)[1:-1] in text for value in secrets.values()):
        return
    found: set[str] = set()
    _redact(nb, secrets, found)
    if found:
        log.warning("notebook %s wrote %s into its output; AutoFlow removed it from the saved notebook", name, " and ".join(sorted(found)))


def _stamp(
    nb: nbformat.NotebookNode,
    path: Path,
    record: Mapping[str, Any],
    started: dt.datetime,
    error: str | None,
) -> None:
    redact_secrets(nb, path.name)
    finished = dt.datetime.now(dt.timezone.utc)
    nb.metadata["autoflow"] = {
        **record,
        "autoflow_version": _autoflow_version(),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_seconds": round((finished - started).total_seconds(), 6),
        "status": "failed" if error else "succeeded",
        "error": error,
    }
    nbformat.write(nb, path)


def execute_notebook(
    input_path: Path,
    output_path: Path,
    parameters: Mapping[str, Any],
    *,
    timeout: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    kernel_name: str = "python3",
    max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
) -> Path:
    """Run ``input_path`` with ``parameters`` injected and write the executed copy to ``output_path``.

    ``timeout`` bounds the whole run (kernel start included), not each cell; on expiry the kernel
    is stopped. Past ``max_output_bytes`` of output the kernel is interrupted, further output is
    dropped and the run fails. ``metadata`` is stamped, with AutoFlow's version and timings, under
    the ``autoflow`` key of the output notebook's metadata. The kernel runs in ``cwd`` (default: the notebook's
    folder); ``python3`` always means this environment's Python. On any failure the executed copy
    is kept (with the error) and :class:`NotebookExecutionError` says which cell failed and where
    the copy is. Returns ``output_path``.
    """
    input_path, output_path = Path(input_path).absolute(), Path(output_path).absolute()
    name = input_path.name
    if not input_path.is_file():
        raise NotebookExecutionError(f"notebook {name} was not run: {input_path} does not exist", notebook=name)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        values = to_json_safe(dict(parameters))
        record = to_json_safe(dict(metadata or {}))
    except TypeError as exc:
        raise NotebookExecutionError(
            f"notebook {name} was not run: {exc}; pass parameters and metadata as JSON-like values",
            notebook=name,
        ) from None
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NotebookExecutionError(
            f"notebook {name} was not run: cannot create {output_path.parent} ({exc.strerror})",
            notebook=name,
        ) from None

    budget = _Budget(timeout, max_output_bytes)
    log.debug("executing %s -> %s", input_path, output_path)
    error: NotebookExecutionError | None = None
    for start in range(1, KERNEL_START_ATTEMPTS + 1):
        with tempfile.TemporaryFile() as kernel_output:
            manager = type("_KernelManager", (_EnvironmentKernelManager,), {"kernel_output": kernel_output})
            try:
                nb = _with_own_event_loop(lambda: _papermill(input_path, output_path, values, kernel_name, cwd, budget, manager))
            except Exception as exc:  # noqa: BLE001 - translated below, nothing escapes untyped
                if start < KERNEL_START_ATTEMPTS and _died_while_starting(exc, budget):
                    log.warning(
                        "notebook %s: its kernel died while starting (%s); starting another (try %d of %d)",
                        name, _one_line(str(exc), 200), start + 1, KERNEL_START_ATTEMPTS,
                    )  # fmt: skip
                    continue
                error = _failure(exc, name, input_path, output_path, budget, record, started)
            finally:
                kernel_output.seek(0)
                text = kernel_output.read().decode(errors="replace").strip()
                if text:
                    log.debug("kernel process output for %s:\n%s", name, redact_text(text))
        break
    if error is None and budget.output_exceeded:  # the notebook ignored the interrupt and ran to its end
        error = _failure(None, name, input_path, output_path, budget, record, started)
    if error is not None:
        raise error
    _stamp(nb, output_path, record, started, None)
    return output_path


def _died_while_starting(exc: Exception, budget: _Budget) -> bool:
    """Whether the kernel died before running any cell (so starting another is safe)."""
    if budget.current_cell is not None or budget.expired() or budget.output_bytes:
        return False
    if isinstance(exc, DeadKernelError):
        return True
    return isinstance(exc, RuntimeError) and "kernel died before replying to kernel_info" in str(exc).lower()


def _papermill(
    input_path: Path,
    output_path: Path,
    values: Mapping[str, Any],
    kernel_name: str,
    cwd: Path | None,
    budget: _Budget,
    manager: type[_EnvironmentKernelManager],
) -> nbformat.NotebookNode:
    timeout = budget.seconds
    start_timeout = KERNEL_START_TIMEOUT if timeout is None else max(1.0, min(KERNEL_START_TIMEOUT, timeout))
    executed: nbformat.NotebookNode = papermill.execute_notebook(
        _literal_path(input_path),
        _literal_path(output_path),
        parameters=values,
        kernel_name=kernel_name,
        language="python" if kernel_name == NATIVE_KERNEL_NAME else None,
        progress_bar=False,
        start_timeout=start_timeout,
        # the rest go to nbclient; the kernel's cwd is set here rather than with papermill's
        # process-wide chdir, so notebooks can run concurrently in threads
        resources={"metadata": {"path": str(cwd or input_path.parent)}},
        kernel_manager_class=manager,
        timeout_func=budget,
        engine_name="autoflow",
        autoflow_budget=budget,
    )
    return executed


def _running_cell(nb: nbformat.NotebookNode | None, budget: _Budget, current: Any = None) -> Any:
    """The cell of ``nb`` that was running when execution stopped (or the copy in ``nb`` of ``current``)."""
    current = current if current is not None else budget.current_cell
    if nb is None or current is None:
        return None
    return next((c for c in _user_cells(nb) if c.get("id") is not None and c.get("id") == current.get("id")), None)


def _failure(
    exc: Exception | None,
    name: str,
    input_path: Path,
    output_path: Path,
    budget: _Budget,
    record: Mapping[str, Any],
    started: dt.datetime,
) -> NotebookExecutionError:
    """The :class:`NotebookExecutionError` for ``exc``, after recording it in the kept notebook."""
    nb = _read(output_path) if output_path.exists() else None
    if nb is None:
        # papermill writes the output before starting the kernel: nothing there means the
        # input could not be read as a notebook
        return NotebookExecutionError(
            f"notebook {name} was not run: cannot read {input_path} as a notebook "
            f"({type(exc).__name__}: {_one_line(str(exc), 200)}); check that it is a valid .ipynb file",
            notebook=name,
        )
    kept = f"the executed notebook is kept at {output_path}"
    number: int | None = None
    if budget.output_exceeded:  # checked first: the interrupt that stopped it looks like any error
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
        what = f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename
        message = f"notebook {name} failed in {where} with {_one_line(what)}; {kept}"
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
        message = f"notebook {name} failed: {type(exc).__name__}: {_one_line(str(exc), 200)}; {kept}"
    message = redact_text(message)  # the error goes to the log, the run history and the notebook
    if exc is not None and log.isEnabledFor(logging.DEBUG):
        log.debug("notebook %s failed:\n%s", name, redact_text("".join(traceback.format_exception(exc)).rstrip()))
    try:
        _stamp(nb, output_path, record, started, message)
    except OSError:
        log.warning("could not record the failure in %s", output_path)
    return NotebookExecutionError(message, notebook=name, output_path=output_path, cell=number)
