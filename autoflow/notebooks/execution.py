"""Running one notebook with papermill on a real kernel: :func:`execute_notebook`."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
from nbclient.exceptions import DeadKernelError

from autoflow.errors import NotebookExecutionError
from autoflow.notebooks.engine import _Budget, _with_own_event_loop
from autoflow.notebooks.failures import _failure, _one_line, _Run, _stamp
from autoflow.notebooks.kernels import KERNEL_START_ATTEMPTS, KERNEL_START_TIMEOUT, _EnvironmentKernelManager
from autoflow.parameters import to_json_safe
from autoflow.redaction import Redactor

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "execute_notebook"]

log = logging.getLogger("autoflow.notebooks")

#: output (text, images, ...) one notebook may produce, unless AUTOFLOW_MAX_OUTPUT_MB says otherwise
DEFAULT_MAX_OUTPUT_BYTES = 50 * 2**20


def _literal_path(path: Path) -> str:
    # papermill str.format()s paths with the parameters; braces in a path must stay braces
    return str(path).replace("{", "{{").replace("}", "}}")


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
    redactor: Redactor | None = None,
) -> Path:
    """Run ``input_path`` with ``parameters`` injected and write the executed copy to ``output_path``.

    ``timeout`` bounds the whole run (kernel start included), not each cell; on expiry the kernel
    is stopped. Past ``max_output_bytes`` of output the kernel is interrupted, further output is
    dropped and the run fails. ``metadata`` is stamped, with AutoFlow's version and timings, under
    the ``autoflow`` key of the output notebook's metadata. The kernel runs in ``cwd`` (default: the notebook's
    folder); ``python3`` always means this environment's Python. On any failure the executed copy
    is kept (with the error) and :class:`NotebookExecutionError` says which cell failed and where
    the copy is. Secret values (``redactor``, by default from this process's settings) are removed
    from the saved notebook and the error. Returns ``output_path``.
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
    run = _Run(input_path, output_path, budget, record, started, redactor or Redactor.from_env())
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
                error = _failure(exc, run)
            finally:
                kernel_output.seek(0)
                text = kernel_output.read().decode(errors="replace").strip()
                if text:
                    log.debug("kernel process output for %s:\n%s", name, run.redactor.text(text))
        break
    if error is None and budget.output_exceeded:  # the notebook ignored the interrupt and ran to its end
        error = _failure(None, run)
    if error is not None:
        raise error
    _stamp(nb, run, None)
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
