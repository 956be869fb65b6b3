"""Pre-started, single-use kernels: a notebook's kernel starts before the notebook needs it.

Starting a kernel costs about a second, paid by every notebook. The pool starts kernels ahead of
need (:meth:`KernelPool.expect`: a run's next notebooks while their upstream notebook runs, the
next runs' first notebooks while the current ones run) and hands each to exactly one notebook
(:meth:`KernelPool.take`), which shuts it down when it ends. A kernel is never reused, so nothing
one notebook did can be seen by another (``%reset`` would not be isolation: modules, threads,
open files and the working directory would survive it).

A pooled kernel is started exactly as a notebook's own would be: the same kernel spec, working
directory (the notebook's folder), arguments and environment (``FLOWAPI_TOKEN`` and no other
secret). It is handed out only if it answered ``kernel_info``, is still alive, and the environment
a kernel would get now is still the one it got. One that died while waiting is discarded and
replaced; one nobody took within :data:`IDLE_SECONDS` is shut down. :func:`close_kernel_pool`
(the service's and every run's exit) kills what is left; a kernel whose AutoFlow process was
killed exits by itself (ipykernel watches its parent process).

``AUTOFLOW_KERNEL_POOL`` is the most kernels waiting at once (default: one per core); ``0`` turns
the pool off and every notebook starts its own kernel.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from autoflow.notebooks.kernels import EnvironmentKernelManager, KernelProcess, kernel_environment, kill_kernel

if TYPE_CHECKING:
    from autoflow.spec.models import WorkflowSpec

log = logging.getLogger("autoflow.notebooks")

#: seconds a started kernel waits for a notebook before it is shut down
IDLE_SECONDS = 120.0
#: seconds between checks that waiting kernels are alive (and not idle too long)
CHECK_SECONDS = 1.0
#: seconds a finished notebook's kernel may take to exit after the shutdown request (then it is killed)
SHUTDOWN_SECONDS = 5.0
#: replacements in a row for a kernel that keeps dying while it waits (then notebooks start their own)
MAX_REPLACEMENTS = 2
#: nbclient's default: a notebook's kernel keeps its IPython history in memory, not in ~/.ipython
HISTORY_ARGUMENT = "--HistoryManager.hist_file=:memory:"


class KernelKey(NamedTuple):
    """What makes kernels interchangeable: the kernel spec and the working directory."""

    kernel_name: str
    cwd: str

    @classmethod
    def of(cls, kernel_name: str, cwd: Path | str) -> KernelKey:
        return cls(kernel_name, str(Path(cwd).absolute()))


def _run_coroutine(factory: Callable[[], Awaitable[Any]]) -> None:
    """Run ``factory()`` to its end on an event loop of its own (another thread's if this one runs a loop)."""

    async def run() -> None:
        await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    thread = threading.Thread(target=lambda: asyncio.run(run()), name="autoflow-kernel-cleanup")
    thread.start()
    thread.join()


def _environment_fingerprint() -> int:
    """What a kernel started now would see of this process's environment."""
    return hash(frozenset(kernel_environment().items()))


@dataclass(eq=False)
class PooledKernel:
    """A kernel started ahead of need. Once :meth:`KernelPool.take` returned it, the taker owns it:
    its manager (started, no client connected), its process (for :func:`kill_kernel`) and the file
    holding the kernel process's own output (closed by the taker)."""

    key: KernelKey
    manager: EnvironmentKernelManager
    process: KernelProcess
    output: IO[bytes]
    environment: int
    started: float = field(default_factory=time.monotonic)
    #: set once the start ended, either way; ``ok`` says how
    settled: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    ready_at: float | None = None
    #: its manager's resources were released (``shutdown_kernel`` does it)
    cleaned: bool = False
    #: 0 for a kernel asked for, n for the n-th replacement of one that died while waiting
    generation: int = 0

    def alive(self) -> bool:
        process = self.process.process
        return process is not None and process.poll() is None

    def discard(self, *, close_output: bool = True) -> None:
        """Kill the kernel and release what its manager holds (connection file, ports, sockets);
        never raises. The output file stays open if ``close_output`` is false (its taker owns it)."""
        kill_kernel(self.process)
        if not self.cleaned:
            self.cleaned = True
            with contextlib.suppress(Exception):
                _run_coroutine(self.manager.cleanup_resources)
        if close_output:
            with contextlib.suppress(Exception):
                self.output.close()


class KernelPool:
    """At most ``size`` kernels started ahead of need and waiting for a notebook."""

    def __init__(self, size: int, *, start_timeout: float = 60.0) -> None:
        self.size = size
        self.start_timeout = start_timeout
        self._lock = threading.Condition()
        #: started or starting, not yet taken, in start order
        self._waiting: list[PooledKernel] = []
        self._closed = False
        self._starter = ThreadPoolExecutor(max_workers=max(1, min(size, os.cpu_count() or 1)), thread_name_prefix="autoflow-kernel-start")
        self._keeper: threading.Thread | None = None
        #: shuts down, in the background, kernels whose notebook ended
        self._stopper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="autoflow-kernel-stop")
        #: counters for tests and the log: kernels started, handed out, discarded because they died, idle
        self.started = 0
        self.handed_out = 0
        self.died = 0
        self.expired = 0

    # -- what notebooks ask ---------------------------------------------------------------------

    def expect(self, keys: Iterable[KernelKey], *, top_up: bool = False) -> None:
        """Start one kernel for each of ``keys`` (a notebook that will start soon), as far as the
        pool has room; ``top_up``: only as many as it takes for each key to have as many kernels
        waiting as it appears in ``keys`` (a guess made twice does not start twice the kernels)."""
        wanted = list(keys)
        with self._lock:
            if top_up:
                have = Counter(k.key for k in self._waiting)
                wanted = [key for key, n in Counter(wanted).items() for _ in range(max(n - have[key], 0))]
            for key in wanted:
                if self._closed or len(self._waiting) >= self.size:
                    break
                self._start(key)
            self._ensure_keeper()

    def take(self, key: KernelKey, *, wait: float) -> PooledKernel | None:
        """A started kernel for ``key``, waiting up to ``wait`` seconds for one still starting; or
        ``None`` (the notebook starts its own). The caller owns what it gets."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                candidates = [k for k in self._waiting if k.key == key]
                if self._closed or not candidates:
                    return None
                kernel = next((k for k in candidates if k.ok), candidates[0])  # a ready one first
                self._waiting.remove(kernel)
                self._lock.notify_all()
            if not kernel.settled.wait(max(deadline - time.monotonic(), 0)):
                log.debug("a pre-started kernel did not start in time; the notebook starts its own")
                kernel.discard()
                return None
            if kernel.ok and kernel.alive() and kernel.environment == _environment_fingerprint():
                with self._lock:
                    self.handed_out += 1
                return kernel
            if kernel.ok and not kernel.alive():
                with self._lock:
                    self.died += 1
                log.info("a pre-started kernel had exited while waiting; discarded")
            kernel.discard()

    def retire(self, kernel: PooledKernel) -> None:
        """Shut down, in the background, a kernel whose notebook ended (its client disconnected):
        the notebook's result does not wait for the kernel process to exit."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._stopper.submit(self._run_retire, kernel)
        if closed:
            kernel.discard(close_output=False)

    def _run_retire(self, kernel: PooledKernel) -> None:
        try:
            asyncio.run(asyncio.wait_for(kernel.manager.shutdown_kernel(now=False), SHUTDOWN_SECONDS))
            kernel.cleaned = True
        except Exception as exc:  # noqa: BLE001 - killed just below whatever went wrong
            log.debug("a kernel did not shut down cleanly: %r", exc)
        finally:
            kernel.discard(close_output=False)  # the notebook's execution reads and closes it

    def waiting(self) -> int:
        """Kernels started or starting, not yet taken."""
        with self._lock:
            return len(self._waiting)

    def ready(self) -> list[int]:
        """Process ids of the kernels started and waiting for a notebook."""
        with self._lock:
            return [k.process.pid for k in self._waiting if k.ok and k.process.pid is not None]

    def close(self) -> None:
        """Kill every kernel not handed out; later calls do nothing. Never waits long."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            left, self._waiting = self._waiting, []
            self._lock.notify_all()
        for kernel in left:  # a start still under way is killed too: its process is known once launched
            kernel.discard()
        self._starter.shutdown(wait=True, cancel_futures=True)
        self._stopper.shutdown(wait=True)  # each shutdown is bounded by SHUTDOWN_SECONDS
        for kernel in left:  # killed again: one launched between the first kill and the end of its start
            kernel.discard()
        log.debug(
            "kernel pool closed: %d kernels started ahead of need, %d handed out, %d died waiting, %d shut down unused, %d unused at the end",
            self.started, self.handed_out, self.died, self.expired, len(left),
        )  # fmt: skip

    # -- inside ---------------------------------------------------------------------------------

    def _start(self, key: KernelKey, generation: int = 0) -> None:
        """Begin starting a kernel for ``key`` (the lock is held)."""
        output = tempfile.TemporaryFile()
        process = KernelProcess()
        manager = EnvironmentKernelManager(kernel_name=key.kernel_name)
        manager.kernel_output, manager.launched = output, process
        kernel = PooledKernel(key, manager, process, output, _environment_fingerprint(), generation=generation)
        self.started += 1
        self._waiting.append(kernel)
        self._lock.notify_all()
        self._starter.submit(self._run_start, kernel)

    def _run_start(self, kernel: PooledKernel) -> None:
        try:
            if not self._closed:
                asyncio.run(asyncio.wait_for(self._start_kernel(kernel), self.start_timeout))
                kernel.ok, kernel.ready_at = True, time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the notebook starts its own kernel and reports any problem
            log.debug("a kernel started ahead of need did not start: %r", exc)
        finally:
            kernel.settled.set()
            with self._lock:
                closed = self._closed
                self._lock.notify_all()
            if closed or not kernel.ok:  # closing may have killed it before it was launched
                kernel.discard()

    async def _start_kernel(self, kernel: PooledKernel) -> None:
        manager = kernel.manager
        await manager.start_kernel(cwd=kernel.key.cwd, extra_arguments=[HISTORY_ARGUMENT] if manager.ipykernel else [])
        client = manager.client()
        try:
            client.start_channels()
            await client.wait_for_ready(timeout=self.start_timeout)
        finally:
            client.stop_channels()
            # the control socket belongs to this event loop; the notebook's loop opens its own
            manager._close_control_socket()

    def _ensure_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(target=self._keep, name="autoflow-kernel-pool", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        """Discard (and replace) kernels that died while waiting; shut down those idle too long."""
        while True:
            with self._lock:
                if self._closed:
                    return
                self._lock.wait(CHECK_SECONDS if self._waiting else None)
                if self._closed:
                    return
                now = time.monotonic()
                dead = [k for k in self._waiting if k.ok and not k.alive()]
                idle = [k for k in self._waiting if k.ok and k.alive() and now - (k.ready_at or now) > IDLE_SECONDS]
                for kernel in dead + idle:
                    self._waiting.remove(kernel)
                self.died += len(dead)
                self.expired += len(idle)
                for kernel in dead:
                    if kernel.generation < MAX_REPLACEMENTS:  # what it was started for may still come
                        self._start(kernel.key, kernel.generation + 1)
            for kernel in dead:
                log.info("a pre-started kernel had exited while waiting; discarded and replaced")
                kernel.discard()
            for kernel in idle:
                log.debug("a pre-started kernel waited %.0f s unused; shut down", IDLE_SECONDS)
                kernel.discard()


_pool: KernelPool | None = None
_pool_lock = threading.Lock()


def kernel_pool() -> KernelPool | None:
    """This process's kernel pool (created on first use), or ``None`` when ``AUTOFLOW_KERNEL_POOL=0``."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._closed:
            from autoflow.settings import Settings

            try:
                settings = Settings.from_env()
            except Exception:  # noqa: BLE001 - settings errors are reported where settings are read
                return None
            if settings.kernel_pool <= 0:
                return None
            _pool = KernelPool(settings.kernel_pool, start_timeout=settings.kernel_start_timeout)
            atexit.register(close_kernel_pool)
        return _pool


def notebook_kernels(workflow: WorkflowSpec, labels: Iterable[str]) -> list[KernelKey]:
    """The kernels ``labels`` of ``workflow`` run on (papermill's engine: ``python3`` in the
    notebook's folder)."""
    return [KernelKey.of("python3", workflow.notebooks[label].path.parent) for label in labels]


def first_notebooks(workflow: WorkflowSpec) -> list[str]:
    """The notebooks of ``workflow`` that read no other notebook: those a run starts with."""
    return [label for label in workflow.execution_order() if not workflow.dependencies(label)]


def first_kernels(workflows: Iterable[WorkflowSpec], *, runs: int) -> list[KernelKey]:
    """The kernels the first notebooks of ``runs`` runs of any of ``workflows`` could need: each
    distinct kernel ``runs`` times (a guess made before anyone knows which runs are due)."""
    keys = dict.fromkeys(key for workflow in workflows for key in notebook_kernels(workflow, first_notebooks(workflow)))
    return [key for key in keys for _ in range(runs)]


def expect_kernels(keys: Iterable[KernelKey], *, top_up: bool = False) -> None:
    """Start kernels for notebooks about to run (:meth:`KernelPool.expect`), if the pool is on;
    never raises."""
    keys = list(keys)
    if not keys:
        return
    try:
        pool = kernel_pool()
        if pool is not None:
            pool.expect(keys, top_up=top_up)
    except Exception as exc:  # noqa: BLE001 - a kernel not started ahead is started when needed
        log.debug("kernels not started ahead of need: %r", exc)


def retire(kernel: PooledKernel) -> None:
    """Shut down a kernel a notebook has finished with (in the background while the pool is open)."""
    with _pool_lock:
        pool = _pool
    if pool is None:
        kernel.discard(close_output=False)
    else:
        pool.retire(kernel)


def close_kernel_pool() -> None:
    """Kill every kernel waiting in this process's pool (at exit, and when the service stops)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()
