"""Running one notebook with papermill on a real kernel: :func:`execute_notebook`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
from papermill.iorw import load_notebook_node

from autoflow.errors import NotebookExecutionError
from autoflow.notebooks.engine import Budget, with_own_event_loop
from autoflow.notebooks.failures import NotebookRun, failure, one_line, stamp
from autoflow.notebooks.kernel_pool import KernelKey, PooledKernel, expect_kernels, kernel_pool
from autoflow.notebooks.kernels import (
    KERNEL_START_ATTEMPTS,
    KERNEL_START_TIMEOUT,
    EnvironmentKernelManager,
    KernelProcess,
    KernelStartFailed,
    kill_kernel,
)
from autoflow.notebooks.watchdog import Cancelled, Stopped, cancel_reason, guarded_outputs, run_watched
from autoflow.parameters import to_json_safe
from autoflow.redaction import Redactor
from autoflow.settings import Settings

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "ExecutionLimits", "execute_notebook"]

log = logging.getLogger("autoflow.notebooks")

#: output (text, images, ...) one notebook may produce, unless AUTOFLOW_MAX_OUTPUT_MB says otherwise
DEFAULT_MAX_OUTPUT_BYTES = 50 * 2**20
#: seconds a notebook may run when neither workflows.yml nor AUTOFLOW_NOTEBOOK_TIMEOUT says otherwise
DEFAULT_NOTEBOOK_TIMEOUT = Settings().notebook_timeout


@dataclass(frozen=True)
class ExecutionLimits:
    """What bounds a notebook's execution, from :class:`~autoflow.settings.Settings`."""

    #: seconds a notebook may run, kernel start included, when it has no ``timeout`` of its own
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    #: seconds each try at starting its kernel may take
    kernel_start_timeout: float = KERNEL_START_TIMEOUT
    #: output the notebook may produce before it is interrupted (``None``: no limit)
    max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutionLimits:
        return cls(settings.notebook_timeout, settings.kernel_start_timeout, settings.max_output_bytes)


def _literal_path(path: Path) -> str:
    # papermill str.format()s paths with the parameters; braces in a path must stay braces
    return str(path).replace("{", "{{").replace("}", "}}")


def execute_notebook(
    input_path: Path,
    output_path: Path,
    parameters: Mapping[str, Any],
    *,
    timeout: float | None = None,
    limits: ExecutionLimits = ExecutionLimits(),
    metadata: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    kernel_name: str = "python3",
    redactor: Redactor | None = None,
    then_expect: Sequence[KernelKey] = (),
) -> Path:
    """Run ``input_path`` with ``parameters`` injected and write the executed copy to ``output_path``.

    ``timeout`` (default ``limits.notebook_timeout``) bounds the whole run, kernel start included,
    not each cell; on expiry the kernel is stopped. Each try at starting the kernel is bounded by
    ``limits.kernel_start_timeout``; a kernel that dies or does not answer is replaced, up to
    :data:`KERNEL_START_ATTEMPTS` tries. Past ``limits.max_output_bytes`` of output the kernel is
    interrupted, further output is dropped and the run fails. ``metadata`` is stamped, with
    AutoFlow's version and timings, under the ``autoflow`` key of the output notebook's metadata.
    The kernel runs in ``cwd`` (default: the notebook's folder); ``python3`` always means this
    environment's Python. On any failure the executed copy is kept (with the error) and
    :class:`NotebookExecutionError` says which cell failed and where the copy is. Secret values
    (``redactor``, by default from this process's settings) are removed from the saved notebook
    and the error. ``then_expect``: kernels to start ahead of need (the notebooks that will run
    after this one) once this notebook has its kernel (or is starting it). Returns ``output_path``.
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

    attempt_id = record.get("attempt_id") if isinstance(record.get("attempt_id"), int) else None
    if values:
        _check_parameters_cell(input_path)
    seconds = limits.notebook_timeout if timeout is None else timeout
    budget = Budget(seconds, limits.max_output_bytes, limits.kernel_start_timeout)
    run = NotebookRun(input_path, output_path, budget, record, started, redactor or Redactor.from_env())
    log.debug("executing %s -> %s", input_path, output_path)
    error: NotebookExecutionError | None = None
    key = KernelKey.of(kernel_name, cwd or input_path.parent)
    for start in range(1, KERNEL_START_ATTEMPTS + 1):
        # the first try takes a kernel started ahead of need, if there is one; later tries start their own
        pooled = _pooled_kernel(key, budget) if start == 1 else None
        if start == 1:
            expect_kernels(then_expect)
        with pooled.output if pooled is not None else tempfile.TemporaryFile() as kernel_output:
            kernel = pooled.process if pooled is not None else KernelProcess()
            manager = type("_KernelManager", (EnvironmentKernelManager,), {"kernel_output": kernel_output, "launched": kernel})
            output = guarded_outputs.open(output_path)
            try:
                nb = run_watched(
                    lambda: with_own_event_loop(lambda: _papermill(input_path, output, values, kernel_name, cwd, budget, manager, pooled)),
                    name=name, kernel=kernel, output=output, kernel_start_bound=budget.kernel_start_bound(),
                    remaining=budget.remaining, cell_started=lambda: budget.current_cell is not None, attempt_id=attempt_id,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - translated below, nothing escapes untyped
                failed: Exception = exc
                kill_kernel(kernel)  # what is left of its process group, if jupyter_client's clean-up missed it
            else:
                break
            finally:
                guarded_outputs.close(output)
                kernel_output.seek(0)
                text = run.redactor.text(kernel_output.read().decode(errors="replace").strip())
                if text:
                    log.debug("kernel process output for %s:\n%s", name, text)
        if isinstance(failed, KernelStartFailed) and not budget.expired():
            if text:  # the kernel's last words, e.g. "Address already in use", say why
                failed.reason += f" (its last output: {one_line(text.splitlines()[-1], 200)})"
            if start < KERNEL_START_ATTEMPTS:
                log.warning(
                    "notebook %s: its kernel %s; starting another (try %d of %d)",
                    name, "did not answer in time" if failed.timed_out else "died while starting", start + 1, KERNEL_START_ATTEMPTS,
                )  # fmt: skip
                continue
        cancelled = cancel_reason(attempt_id)
        if cancelled is not None:  # interrupted on purpose: the kept notebook says why
            if isinstance(failed, Cancelled) and not output_path.exists():
                error = NotebookExecutionError(str(failed), notebook=name, retryable=False)
            else:
                error = failure(failed, dataclasses.replace(run, cancelled=cancelled), tries=start)
                error.retryable = False
            break
        if isinstance(failed, Stopped):  # not the notebook's fault, and not to be tried again here
            error = NotebookExecutionError(str(failed), notebook=name, output_path=output_path if output_path.exists() else None, retryable=False)
            break
        error = failure(failed, run, tries=start)
        break
    if error is None and budget.output_exceeded:  # the notebook ignored the interrupt and ran to its end
        error = failure(None, run)
    if error is not None:
        raise error
    stamp(nb, run, None)
    return output_path


def _pooled_kernel(key: KernelKey, budget: Budget) -> PooledKernel | None:
    """A kernel started ahead of need for ``key``, if the pool is on and has (or is starting) one."""
    pool = kernel_pool()
    return None if pool is None else pool.take(key, wait=budget.kernel_start_bound())


def _check_parameters_cell(input_path: Path) -> None:
    """Raise unless the first cell tagged ``parameters`` is a code cell.

    papermill injects the values after the first cell tagged ``parameters``, whatever its type, or at
    the top when there is none; either way the notebook's own assignments would then overwrite them.
    A notebook that cannot be read is left to papermill, which reports it with the run.
    """
    try:
        nb = load_notebook_node(str(input_path))  # papermill's reading: every cell gets its tags
    except Exception:  # noqa: BLE001 - papermill reads it again and the failure is reported there
        return
    tagged = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if tagged is None:
        problem = "has no cell tagged 'parameters'"
    elif tagged.cell_type != "code":
        problem = f"has its 'parameters' tag on a {tagged.cell_type} cell"
    else:
        return
    raise NotebookExecutionError(
        f"notebook {input_path} {problem}: the values AutoFlow passes would be overwritten by the "
        f"notebook's own assignments, so it was not run; tag the code cell that assigns its parameters' "
        f"defaults 'parameters', not a markdown cell (JupyterLab: Property Inspector, Cell Tags)",
        notebook=input_path.name,
        retryable=False,
    )


def _papermill(
    input_path: Path,
    output: str,
    values: Mapping[str, Any],
    kernel_name: str,
    cwd: Path | None,
    budget: Budget,
    manager: type[EnvironmentKernelManager],
    pooled: PooledKernel | None = None,
) -> nbformat.NotebookNode:
    executed: nbformat.NotebookNode = papermill.execute_notebook(
        _literal_path(input_path),
        output,  # a guarded_outputs path: no braces for papermill to format
        parameters=values,
        kernel_name=kernel_name,
        language="python" if kernel_name == NATIVE_KERNEL_NAME else None,
        progress_bar=False,
        # the rest go to nbclient; the kernel's cwd is set here rather than with papermill's
        # process-wide chdir, so notebooks can run concurrently in threads
        resources={"metadata": {"path": str(cwd or input_path.parent)}},
        kernel_manager_class=manager,
        timeout_func=budget,
        engine_name="autoflow",
        autoflow_budget=budget,
        autoflow_pooled_kernel=pooled,
    )
    return executed
