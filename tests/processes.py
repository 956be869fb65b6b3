"""Processes tests start are ended with the test (a pytest plugin).

:func:`end_tree` ends a process and everything it started: SIGTERM, a grace period, then
SIGKILL to whatever is left. The autouse fixture :func:`end_leftover_autoflow_processes` does
that, after every test (passed, failed, or stopped by pytest-timeout, whose ``signal`` method
raises in the test so teardown runs), to each ``python -m autoflow`` process the test started
and left running: a test that gives up on a service must not leave it running for hours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
import pytest

GRACE_SECONDS = 10.0


def tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and all its descendants (kernels run in process groups of their own: not found by killpg)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def end_tree(roots: Iterable[psutil.Process], grace: float = GRACE_SECONDS) -> list[psutil.Process]:
    """SIGTERM (and SIGCONT) ``roots`` and their process groups, then SIGKILL every process of their trees still there after ``grace`` s.

    The trees are read before any signal, so descendants orphaned by their parent's end are
    ended too. Returns the processes that had to be killed.
    """
    roots = list(roots)
    everyone = {process.pid: process for root in roots for process in tree(root)}
    for root in roots:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            root.terminate()
            if os.getpgid(root.pid) == root.pid:  # started with start_new_session: the group is its own
                os.killpg(root.pid, signal.SIGTERM)
            root.resume()  # a stopped (SIGSTOP) process handles SIGTERM once continued
    alive = _wait_for_end(roots, grace)
    everyone.update({p.pid: p for root in alive for p in tree(root)})
    left = [p for p in everyone.values() if _running(p)]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _wait_for_end(left, 30)
    return left


def _wait_for_end(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after up to ``timeout`` s; zombies are left to their parent to reap
    (so a ``Popen`` still gets its child's exit status)."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _descendant_pids(pid: int) -> list[int]:
    """pids of ``pid``'s descendants, from /proc/PID/task/TID/children (cheap: no scan of every process)."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                pending.extend(int(child) for child in children.read_text().split())
        if parent != pid:
            found.append(parent)
    return found


def _autoflow_descendants() -> dict[tuple[int, float], psutil.Process]:
    """This pytest process's live descendants started as ``python -m autoflow ...``, by (pid, start time)."""
    if Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        candidates: Iterable[psutil.Process | int] = [pid for pid in _descendant_pids(os.getpid()) if _is_autoflow(pid)]
    else:
        candidates = psutil.Process().children(recursive=True)
    found = {}
    for candidate in candidates:
        with contextlib.suppress(psutil.Error):
            process = candidate if isinstance(candidate, psutil.Process) else psutil.Process(candidate)
            command = process.cmdline()
            if "-m" in command[:3] and "autoflow" in command[:4] and _running(process):
                found[process.pid, process.create_time()] = process
    return found


def _is_autoflow(pid: int) -> bool:
    try:
        return b"\0autoflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture(autouse=True)
def end_leftover_autoflow_processes() -> Iterator[None]:
    """Ends every ``python -m autoflow`` process (with its kernels) the test started and left running."""
    before = _autoflow_descendants()
    yield
    leftovers = [process for key, process in _autoflow_descendants().items() if key not in before]
    if leftovers:
        end_tree(leftovers)
