"""Bounding a notebook's execution from outside the thread that runs its kernel client.

The kernel client runs on an event loop in a helper thread; a plain blocking call there (a zmq
send that never returns) would stop any bound kept by that loop. The calling thread waits for it
with a watchdog instead: when the helper overruns its bound, the kernel's process group is killed
and the helper is abandoned, and nothing it writes afterwards reaches the output notebook.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from papermill.iorw import papermill_io

from autoflow.notebooks.kernels import KernelProcess, KernelStartFailed, interrupt_kernel, kill_kernel

T = TypeVar("T")

log = logging.getLogger("autoflow.notebooks")

#: seconds the watchdog gives the event loop's own bounds, and their clean-up, to act first
WATCHDOG_GRACE = 10.0
#: seconds between the watchdog's looks at the budget
WATCHDOG_POLL = 0.5


class Stopped(Exception):
    """The process is stopping (e.g. SIGTERM): the notebook was stopped, or not started."""


class Cancelled(Stopped):
    """The notebook's run attempt was cancelled (``autoflow cancel``): stopped, or not started."""


#: set once this process stops executing notebooks (:func:`stop_all_notebooks`)
_stopping = threading.Event()
#: the kernels of the executions running now, by id
_live: dict[int, KernelProcess] = {}
_live_lock = threading.Lock()


#: seconds a cancelled notebook's kernel gets to stop at its interrupt before it is killed
CANCEL_GRACE = 5.0
#: run attempt id -> why it is to stop (``autoflow cancel``): its notebooks are interrupted
_cancels: dict[int, str] = {}


def cancel_attempt(attempt_id: int, reason: str) -> None:
    """Stop the notebooks this process executes for run attempt ``attempt_id``, and start no more
    of them: each running kernel is interrupted (then killed if it does not stop within
    :data:`CANCEL_GRACE`) and its execution fails with ``reason``."""
    with _live_lock:
        _cancels[attempt_id] = reason


def cancel_reason(attempt_id: int | None) -> str | None:
    """Why run attempt ``attempt_id`` is to stop, if it is (see :func:`cancel_attempt`)."""
    if attempt_id is None:
        return None
    with _live_lock:
        return _cancels.get(attempt_id)


def forget_attempt(attempt_id: int) -> None:
    """The attempt has ended: drop its cancellation, if any."""
    with _live_lock:
        _cancels.pop(attempt_id, None)


def stop_all_notebooks() -> int:
    """Stop every notebook this process is executing, and start none from now on.

    For a process that is being stopped (a workflow run's flow interrupted by SIGTERM): the
    kernels' process groups are killed at once, so the executions end in :class:`Stopped` instead
    of holding the process until it is killed, and leaving their kernels behind. Returns how many
    notebooks were stopped.
    """
    _stopping.set()
    with _live_lock:
        kernels = list(_live.values())
    for kernel in kernels:
        kill_kernel(kernel)
    return len(kernels)


class _GuardedOutputs:
    """papermill I/O handler for ``autoflow-output:…`` paths: writes reach the real path until it is closed.

    An abandoned execution may still save its notebook much later; once :meth:`close` has run, those
    writes are dropped, so the failure recorded by the caller stays in place.
    """

    scheme = "autoflow-output:"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, Path] = {}

    def open(self, target: Path) -> str:
        """A papermill output path that writes to ``target`` until :meth:`close`."""
        name = f"{self.scheme}{uuid.uuid4().hex}.ipynb"
        with self._lock:
            self._targets[name] = target
        return name

    def close(self, name: str) -> None:
        with self._lock:  # waits for a write in progress: none starts afterwards
            self._targets.pop(name, None)

    def write(self, buf: str, path: str) -> None:
        with self._lock:
            target = self._targets.get(path)
            if target is None:
                log.debug("dropped a late write of an abandoned notebook execution")
                return
            target.write_text(buf, encoding="utf-8")

    def read(self, path: str) -> str:
        with self._lock:
            target = self._targets[path]
        return target.read_text(encoding="utf-8")

    def pretty_path(self, path: str) -> str:
        return str(self._targets.get(path, path))

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError("autoflow-output paths are single notebooks")


guarded_outputs = _GuardedOutputs()
papermill_io.register(guarded_outputs.scheme, guarded_outputs)


class Abandoned(Exception):
    """The watchdog stopped a notebook execution that overran its whole-notebook budget."""


def run_watched(
    function: Callable[[], T],
    *,
    name: str,
    kernel: KernelProcess,
    output: str,
    kernel_start_bound: float,
    remaining: Callable[[], float | None],
    cell_started: Callable[[], bool],
    attempt_id: int | None = None,
) -> T:
    """``function()`` in a daemon thread ``autoflow-notebook-NAME``, bounded from this thread.

    Once run attempt ``attempt_id`` is cancelled (:func:`cancel_attempt`) the kernel is
    interrupted, and killed if it has not stopped :data:`CANCEL_GRACE` seconds later (then
    :class:`Cancelled`); a notebook of a cancelled attempt is not started (:class:`Cancelled`).

    Until a cell starts it may take ``kernel_start_bound`` + :data:`WATCHDOG_GRACE` seconds (then
    :class:`KernelStartFailed`); in all, ``remaining()`` + the grace (then :class:`Abandoned`).
    Either way the papermill ``output`` path is closed (:data:`guarded_outputs`), the kernel's process
    group killed, and the thread left behind, logged.
    """
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()  # Prefect's run context, for the thread's log records

    def target() -> None:
        try:
            outcome.append((True, context.run(function)))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome.append((False, exc))

    if _stopping.is_set():
        raise Stopped(f"notebook {name} was not started: this process is stopping")
    reason = cancel_reason(attempt_id)
    if reason is not None:
        raise Cancelled(f"notebook {name} was not started: {reason}")
    thread = threading.Thread(target=target, name=f"autoflow-notebook-{name}", daemon=True)
    started = time.monotonic()
    with _live_lock:
        _live[id(kernel)] = kernel
    try:
        thread.start()
        result: T = _watch(
            thread, outcome, name=name, kernel=kernel, output=output, started=started,
            kernel_start_bound=kernel_start_bound, remaining=remaining, cell_started=cell_started, attempt_id=attempt_id,
        )  # fmt: skip
        return result
    finally:
        with _live_lock:
            _live.pop(id(kernel), None)


def _watch(
    thread: threading.Thread,
    outcome: list[tuple[bool, Any]],
    *,
    name: str,
    kernel: KernelProcess,
    output: str,
    started: float,
    kernel_start_bound: float,
    remaining: Callable[[], float | None],
    cell_started: Callable[[], bool],
    attempt_id: int | None = None,
) -> Any:
    interrupted_at: float | None = None
    while True:
        thread.join(WATCHDOG_POLL)
        if not thread.is_alive():
            break
        if _stopping.is_set():
            _abandon(thread, kernel, output, name, why="this process is stopping")
            raise Stopped(f"notebook {name} was stopped: this process is stopping")
        reason = cancel_reason(attempt_id)
        if reason is not None:
            if interrupted_at is None:  # the cell ends in KeyboardInterrupt; papermill saves the notebook
                interrupted_at = time.monotonic()
                log.warning("notebook %s: interrupting its kernel: %s", name, reason)
                interrupt_kernel(kernel)
            elif time.monotonic() - interrupted_at > CANCEL_GRACE:
                _abandon(thread, kernel, output, name, why=f"it did not stop within {CANCEL_GRACE:g} s of its interrupt ({reason})")
                raise Cancelled(f"notebook {name} was stopped: {reason}")
            continue
        starting = not cell_started()
        left = remaining()
        if starting and time.monotonic() - started > kernel_start_bound + WATCHDOG_GRACE:
            _abandon(thread, kernel, output, name)
            raise KernelStartFailed(
                f"it did not answer within {kernel_start_bound:g} s", seconds=kernel_start_bound, timed_out=True
            )
        if left is not None and left + WATCHDOG_GRACE < 0:
            _abandon(thread, kernel, output, name)
            raise Abandoned(f"notebook {name} overran its budget")
    ok, value = outcome[0]
    if ok:
        return value
    if _stopping.is_set():  # its kernel was killed under it
        raise Stopped(f"notebook {name} was stopped: this process is stopping") from value
    raise value


def _abandon(thread: threading.Thread, kernel: KernelProcess, output: str, name: str, why: str = "") -> None:
    guarded_outputs.close(output)
    frame = sys._current_frames().get(thread.ident or -1)
    where = "an unknown place"
    if frame is not None:  # the innermost calls, e.g. "wait ← send ← kernel_info (…/threading.py:331)"
        stack = traceback.extract_stack(frame)[::-1]
        where = f"{' ← '.join(f.name for f in stack[:4])} ({stack[0].filename}:{stack[0].lineno})"
    kill_kernel(kernel)
    if why:
        log.warning("notebook %s: AutoFlow killed its kernel: %s", name, why)
        return
    log.warning(
        "notebook %s: its execution did not end within its bound, so AutoFlow killed its kernel and left "
        "thread %s behind, blocked in %s",
        name, thread.name, where,
    )  # fmt: skip
