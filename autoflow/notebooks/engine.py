"""papermill's nbclient engine, bounded: a whole-notebook time budget and an output budget.

Registered with papermill as the ``autoflow`` engine. papermill's and nbclient's log records are
re-levelled to DEBUG: AutoFlow reports what matters itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_core.utils import _loop as _jupyter_loop  # run_sync's "current" event loop: a context variable
from jupyter_core.utils import ensure_async, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.utils import merge_kwargs, remove_args

from autoflow.notebooks.kernel_pool import PooledKernel, retire as kernel_pool_retire
from autoflow.notebooks.kernels import KERNEL_START_TIMEOUT, start_kernel_within

T = TypeVar("T")


class _DemoteToDebug(logging.Filter):
    """Re-levels papermill's and nbclient's chatter to DEBUG; AutoFlow reports what matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_papermill_log = logging.getLogger("papermill")  # nbclient logs here too, papermill passes it
if not any(isinstance(f, _DemoteToDebug) for f in _papermill_log.filters):
    _papermill_log.addFilter(_DemoteToDebug())


class Budget:
    """The whole-notebook budgets (time, output size), and which cell is running (nbclient's ``timeout_func``)."""

    def __init__(
        self, seconds: float | None, max_output_bytes: int | None = None, kernel_start_seconds: float = KERNEL_START_TIMEOUT
    ) -> None:
        self.seconds = seconds
        self.kernel_start_seconds = kernel_start_seconds
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

    def kernel_start_bound(self) -> float:
        """Seconds the kernel may take to start: its own bound, or less if the notebook's time is nearly up."""
        left = self.remaining()
        return self.kernel_start_seconds if left is None else max(min(self.kernel_start_seconds, left), 0.001)

    def __call__(self, cell: Any) -> float | None:
        self.current_cell = cell
        left = self.remaining()
        # nbclient treats 0 as "no timeout", so an exhausted budget must still be positive
        return None if left is None else max(left, 0.001)


class _BoundedClient(PapermillNotebookClient):  # type: ignore[misc]
    """papermill's notebook client, bounding its kernel's start and interrupting the kernel once the
    output passes its budget.

    A notebook printing in a loop would otherwise grow AutoFlow's memory without bound (every
    output is held until the notebook is saved) and could take the whole service down.
    """

    budget: Budget
    #: a kernel started ahead of need, used instead of starting one (and shut down at the end)
    pooled: PooledKernel | None = None

    def start_new_kernel(self, **kwargs: Any) -> None:
        """Start the kernel and its client within the budget's start bound (nbclient's start has none);
        with a pre-started kernel, only connect to it."""
        if self.pooled is not None:
            self.km = self.pooled.manager  # nbclient shuts it down when the notebook ends, as its own
            run_sync(start_kernel_within)(self, self.budget.kernel_start_bound(), connect_only=True)
            return
        run_sync(start_kernel_within)(self, self.budget.kernel_start_bound(), **kwargs)

    async def _async_cleanup_kernel(self) -> None:
        """A pre-started kernel is shut down in the background once its client is disconnected;
        the notebook's result does not wait for the kernel process to exit."""
        pooled, manager, client = self.pooled, self.km, getattr(self, "kc", None)
        if pooled is None or manager is not pooled.manager:
            await super()._async_cleanup_kernel()
            return
        self.km, self.kc = None, None  # type: ignore[assignment]  # nbclient types km as optional
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()
        manager._close_control_socket()  # it belongs to this thread's event loop; the shutdown opens its own
        kernel_pool_retire(pooled)

    _cleanup_kernel = run_sync(_async_cleanup_kernel)

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


class _Engine(NBClientEngine):  # type: ignore[misc]
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
        pooled = kwargs.pop("autoflow_pooled_kernel", None)
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        client = _BoundedClient(
            nb_man,
            **merge_kwargs(
                kwargs, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                log=logging.getLogger("papermill"), log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
            ),
        )  # fmt: skip
        client.budget, client.pooled = budget, pooled
        return client.execute()


papermill_engines.register("autoflow", _Engine)


def with_own_event_loop(function: Callable[[], T]) -> T:
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

