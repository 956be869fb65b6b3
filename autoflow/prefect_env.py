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
#: times the temporary server is started again on another port when its port was taken meanwhile
PORT_RETRIES = 3


def configure_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Set Prefect's environment defaults (before ``prefect`` is imported)."""
    environ = os.environ if environ is None else environ
    for name, value in PREFECT_DEFAULTS.items():
        environ.setdefault(name, value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when AutoFlow dies, even from SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TemporaryServer:
    """A Prefect API server for this process only, its output in ``log_path``."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self._log_offset = 0

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
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = environment_without_secrets()  # the server needs no secret of AutoFlow's
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
        env.pop("PREFECT_API_URL", None)
        spec = importlib.util.find_spec("prefect")  # not imported: the server starts while AutoFlow imports it
        assert spec is not None and spec.origin is not None
        app_dir = str(Path(spec.origin).parent.parent)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log.info("starting a temporary Prefect server on 127.0.0.1:%d (its log: %s)", self.port, self.log_path)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                preexec_fn=die_with_parent, start_new_session=True,
            )  # fmt: skip
        self.spawned_at = time.monotonic()

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        """Wait until the spawned server answers its health check (``timeout`` from its spawn)."""
        assert self.process is not None, "spawn() first"
        deadline = self.spawned_at + timeout
        respawns = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None and respawns < PORT_RETRIES and self._lost_its_port():
                # another process took the port between _free_port() and the server's bind
                respawns += 1
                log.info("port %d was taken meanwhile; starting the temporary Prefect server on another", self.port)
                self.process, self.port = None, _free_port()
                self.spawn()
                continue
            if self.process.poll() is not None:
                raise AutoFlowError(f"the temporary Prefect server exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise AutoFlowError(
            f"the temporary Prefect server did not start within {timeout:.0f} s; see {self.log_path}, "
            "or set PREFECT_API_URL to a running Prefect server"
        )

    def _lost_its_port(self) -> bool:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_offset)
                said = log_file.read().decode(errors="replace").lower()
        except OSError:
            return False
        return "address already in use" in said or "errno 98" in said

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _drain_prefect_workers() -> None:
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
        return
    _early_server = server
    atexit.register(_stop_early_server)


def _stop_early_server() -> None:
    if _early_server is not None:
        _early_server.stop()


@contextlib.contextmanager
def prefect_api(log_dir: Path, log_level: str = "INFO") -> Iterator[str]:
    """A usable Prefect API for the block; yields its URL.

    Imports Prefect (which re-configures logging, so AutoFlow's console logging is set up again
    at ``log_level``).
    """
    configure_environment()
    import prefect  # noqa: F401 - its import sets up Prefect's logging, replaced just below

    from autoflow.logs import setup_logging

    setup_logging(log_level)
    url = os.environ.get("PREFECT_API_URL")
    server: TemporaryServer | None = None
    if not url:
        global _early_server
        server, _early_server = _early_server or TemporaryServer(log_dir / "prefect-server.log"), None
        server.spawn()
        server.wait_ready()
        url = server.api_url
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # Prefect's flow-run heartbeats cost ~1 s per flow run (its thread sleeps in 1 s steps);
    # the run store's own heartbeats already tell a live run from a dead one.
    updates = {PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    try:
        with temporary_settings(updates=updates), _one_client():
            os.environ["PREFECT_API_URL"] = url  # for subprocesses and anything reading the env again
            try:
                yield url
            finally:
                _drain_prefect_workers()
                if server is not None:
                    os.environ.pop("PREFECT_API_URL", None)
    finally:
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
