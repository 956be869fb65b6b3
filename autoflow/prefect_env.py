"""Prefect, configured for AutoFlow: offline, quiet on the console, and with an API to talk to.

Call :func:`configure_environment` before ``prefect`` is first imported. :func:`prefect_api`
gives the process a Prefect API: the server named by ``PREFECT_API_URL`` when it is set (runs
then show in that server's UI), else a temporary server of our own whose output goes to a log
file instead of the user's console, and which dies with the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from autoflow.errors import AutoFlowError
from autoflow.redaction import environment_without_secrets

log = logging.getLogger(__name__)

#: defaults a user can still override in the environment
PREFECT_DEFAULTS = {
    # never try the internet
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # a slow 2-core machine needs more than Prefect's 20 s to start a server
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # AutoFlow's own log lines also appear in the Prefect UI, under their run
    "PREFECT_LOGGING_EXTRA_LOGGERS": "autoflow",
    # flow/task results live in the run history and the output notebooks, not in Prefect storage
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    # Prefect's own console lines ("Created task run ...") are noise next to AutoFlow's
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
SERVER_START_TIMEOUT = 180.0


def configure_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Set Prefect's environment defaults (before ``prefect`` is imported)."""
    environ = os.environ if environ is None else environ
    for name, value in PREFECT_DEFAULTS.items():
        environ.setdefault(name, value)


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when AutoFlow dies, even from SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TemporaryServer:
    """A Prefect API server for this process only, its output in ``log_path``.

    AutoFlow binds the server's listening socket itself and hands it to uvicorn (``--fd``): the
    port is this server's from the moment it is chosen, so no other process (a kernel picking
    its ports, say) can take it while the server starts, and the API's URL is known, and final,
    before the server answers.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.socket = _listening_socket()
        self.port: int = self.socket.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self._stopping = threading.Lock()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the server process and return at once (see :meth:`wait_ready`)."""
        if self.process is not None:
            return
        if self.socket.fileno() == -1:
            raise AutoFlowError("the temporary Prefect server was stopped; it cannot start again")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = environment_without_secrets()  # the server needs no secret of AutoFlow's
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
        env.pop("PREFECT_API_URL", None)
        spec = importlib.util.find_spec("prefect")  # not imported: the server starts while AutoFlow imports it
        assert spec is not None and spec.origin is not None
        app_dir = str(Path(spec.origin).parent.parent)
        fd = self.socket.fileno()
        log.info("starting a temporary Prefect server on 127.0.0.1:%d (its log: %s)", self.port, self.log_path)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
                 "--fd", str(fd), "--log-level", "error", "--lifespan", "on"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, pass_fds=(fd,),
                preexec_fn=die_with_parent, start_new_session=True,
            )  # fmt: skip
        self.spawned_at = time.monotonic()
        self.socket.close()  # the server holds it now; the port stays bound while the server lives

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT, *, cancel: threading.Event | None = None) -> None:
        """Wait until the spawned server answers its health check (``timeout`` from its spawn);
        ``cancel`` set: stop waiting (:class:`ApiCancelled`)."""
        process = self.process
        assert process is not None, "spawn() first"
        deadline = self.spawned_at + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise ApiCancelled
            if process.poll() is not None:
                raise AutoFlowError(f"the temporary Prefect server exited with code {process.returncode}; see {self.log_path}")
            try:  # the socket listens already: a request waits in its backlog until the server serves
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        if cancel is None:
            self.stop()
        raise AutoFlowError(
            f"the temporary Prefect server did not start within {timeout:.0f} s; see {self.log_path}, "
            "or set PREFECT_API_URL to a running Prefect server"
        )

    def stop(self) -> None:
        with self._stopping:
            process, self.process = self.process, None
            self.socket.close()
            if process is None:
                return
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class ApiCancelled(Exception):
    """Waiting for the temporary server was called off (the block that started it ended)."""


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    # uvicorn takes a socket from a descriptor as a Unix one and so does not set this on the
    # connections it accepts; they inherit it from here (no Nagle delay on small responses)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock  # not inheritable: only the server gets it (pass_fds), not kernels AutoFlow starts


def drain_prefect_workers() -> None:
    """Send Prefect's buffered logs and events while the API is still there."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


_early_server: TemporaryServer | None = None


def start_server_early(log_dir: Path) -> None:
    """Without PREFECT_API_URL, spawn the temporary server now, so that it starts while AutoFlow
    imports Prefect and opens its run history (it takes 7-20 s); :func:`prefect_api` then uses it.
    The server dies with this process (and is stopped by :func:`prefect_api`)."""
    global _early_server
    configure_environment()
    if os.environ.get("PREFECT_API_URL") or _early_server is not None:
        return
    server = TemporaryServer(log_dir / "prefect-server.log")
    try:
        server.spawn()
    except OSError as exc:  # e.g. an outputs directory that cannot be created: reported later, properly
        log.debug("temporary Prefect server not started early: %s", exc)
        server.stop()
        return
    _early_server = server
    atexit.register(_stop_early_server)


def _stop_early_server() -> None:
    if _early_server is not None:
        _early_server.stop()


class ApiGate:
    """Whether the temporary server a one-off run did not wait for answers yet."""

    def __init__(self, server: TemporaryServer) -> None:
        self.server = server
        self.ready = threading.Event()
        #: set once the server answered or failed to start
        self.settled = threading.Event()
        self.error: str | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="autoflow-prefect-start", daemon=True)

    def start(self) -> ApiGate:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching (before the server is stopped)."""
        self._cancel.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        from autoflow.testhooks import prefect_answers_after_runs

        try:
            self.server.wait_ready(cancel=self._cancel)
            took = time.monotonic() - self.server.spawned_at
            after = prefect_answers_after_runs()
            with _deferred_ended:  # tests: the server counts as answering only after that many deferred runs
                _deferred_ended.wait_for(lambda: _deferred_runs_ended >= after or self._cancel.is_set(), timeout=SERVER_START_TIMEOUT)
            if self._cancel.is_set():
                raise ApiCancelled
        except ApiCancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - any reason is the same reason: no Prefect for these runs
            self.error = str(exc)
            log.error("%s; this process's runs are recorded in the run history but not in Prefect", exc)
        else:
            log.info("Prefect API ready (the temporary server took %.1f s to start)", took)
            self.ready.set()
        finally:
            self.settled.set()


#: deferred flow runs that ended in this process (for AUTOFLOW_TEST_PREFECT_AFTER_RUNS)
_deferred_runs_ended = 0
_deferred_ended = threading.Condition()


def deferred_run_ended() -> None:
    """Called by :mod:`autoflow.deferred` when a flow run that ran without Prefect's engine ends."""
    global _deferred_runs_ended
    with _deferred_ended:
        _deferred_runs_ended += 1
        _deferred_ended.notify_all()


_gate: ApiGate | None = None


def api_ready() -> bool:
    """False while a temporary server that :func:`prefect_api` did not wait for is still starting
    (a flow run must then run without Prefect's engine: :mod:`autoflow.deferred`)."""
    return _gate is None or _gate.ready.is_set()


def wait_for_api(timeout: float | None = None) -> bool:
    """Wait (up to ``timeout`` s) until the Prefect API answers; False if it did not (or never will)."""
    gate = _gate
    if gate is None:
        return True
    gate.settled.wait(timeout)
    return gate.ready.is_set()


def api_start_remaining() -> float:
    """Seconds until a starting temporary server's start-up time runs out (0 when none starts)."""
    gate = _gate
    if gate is None or gate.settled.is_set():
        return 0.0
    return max(0.0, gate.server.spawned_at + SERVER_START_TIMEOUT - time.monotonic())


@contextlib.contextmanager
def prefect_api(log_dir: Path, log_level: str = "INFO", *, wait: bool = True) -> Iterator[str]:
    """A usable Prefect API for the block; yields its URL.

    Imports Prefect (which re-configures logging, so AutoFlow's console logging is set up again
    at ``log_level``). With a temporary server and ``wait=False`` (one-off runs), the block
    starts at once, while the server starts: until :func:`api_ready`, flow runs run without
    Prefect's engine and are recorded in Prefect once it answers (:mod:`autoflow.deferred`);
    leaving the block waits for those records (up to the server's start-up time).
    """
    global _early_server, _gate
    configure_environment()
    import prefect  # noqa: F401 - its import sets up Prefect's logging, replaced just below

    from autoflow.logs import setup_logging

    setup_logging(log_level)
    url = os.environ.get("PREFECT_API_URL")
    server: TemporaryServer | None = None
    if not url:
        server, _early_server = _early_server or TemporaryServer(log_dir / "prefect-server.log"), None
        server.spawn()
        url = server.api_url
        if wait:
            server.wait_ready()
        else:
            _gate = ApiGate(server).start()
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from autoflow import deferred

    # Prefect's flow-run heartbeats cost ~1 s per flow run (its thread sleeps in 1 s steps);
    # the run store's own heartbeats already tell a live run from a dead one.
    updates = {PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    deferred.start_recording()
    try:
        with temporary_settings(updates=updates), _one_client():
            os.environ["PREFECT_API_URL"] = url  # for subprocesses and anything reading the env again
            interrupted = True
            try:
                yield url
                interrupted = False
            finally:
                # flow runs that started before the server answered: into Prefect before it stops
                deferred.finish_recording(timeout=5.0 if interrupted else api_start_remaining() + 60.0)
                drain_prefect_workers()
                if server is not None:
                    os.environ.pop("PREFECT_API_URL", None)
    finally:
        gate, _gate = _gate, None
        if gate is not None:
            gate.close()
        if server is not None:
            server.stop()


@contextlib.contextmanager
def _one_client() -> Iterator[None]:
    """One Prefect API client for every flow run of the block, in any thread that copies its context.

    Prefect's flow and task engines take the client of the current ``SyncClientContext`` and
    only make one (and close it) when there is none. Without this, each flow run (every tick)
    built an HTTP client whose SSL context loads the CA bundle (~0.7 MiB of native memory), and
    that garbage, freed only by full collections, left the heap fragmented: RSS rose in steps.
    """
    from prefect.client.schemas.responses import OrchestrationResult
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED, temporary_settings

    # Prefect builds OrchestrationResult[Any] at every state change (an annotation of a nested
    # function); pydantic caches such classes weakly, so unless one is kept, each is a new class
    # that only the cyclic garbage collector frees.
    keep = OrchestrationResult[Any]
    # no version check now: the API may not be up yet (a server started beside the service);
    # a flow run then fails as it did with a client of its own, and later ones reconnect
    with temporary_settings(updates={PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False}):
        shared = SyncClientContext()
        shared.__enter__()
    try:
        yield
    finally:
        shared.__exit__(None, None, None)
        del keep
