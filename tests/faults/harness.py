"""Real parts for fault tests: AutoFlow as a user runs it, a PostgreSQL of the test's own, process trees.

- :class:`Deployment`: an inputs directory (workflows.yml and notebooks), an outputs directory
  and an environment; runs ``python -m autoflow`` in subprocesses whose output goes to files.
- :class:`Service`: one such process; its descendants (kernels, pandoc, asciidoctor-pdf) are
  read from /proc through psutil.
- :class:`OwnPostgres`: a PostgreSQL cluster made with ``initdb`` in a temporary directory on a
  free 127.0.0.1 port, which a test may stop and start (never the shared server).

Every service runs in a session of its own; whatever the test's outcome, the autouse fixture in
tests/processes.py ends the ones a test leaves running, with their kernels.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from autoflow.settings import Settings
from autoflow.store import Attempt, RunStore
from tests.nbfactory import write_notebook
from tests.pgcluster import Cluster
from tests.processes import end_tree


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")


def tracebacks(text: str) -> int:
    """Python tracebacks printed in ``text``, except those a DEBUG record deliberately carries."""
    count, level = 0, None
    for line in text.splitlines():
        record = RECORD.match(line)
        if record:
            level = record.group(1)
        elif line.startswith("Traceback (most recent call last)") and level != "DEBUG":
            count += 1
    return count


def still_running(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` that still run (the same process: psutil checks its start time)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def describe(processes: Iterable[psutil.Process]) -> str:
    parts = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            parts.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
    return "; ".join(parts) or "none"


class Service:
    """One ``python -m autoflow ...`` process, its stdout and stderr going to files."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "autoflow", *args], env=dict(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid = self.popen.pid
        self._process = psutil.Process(self.pid)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def frozen(self) -> bool:
        """Stopped by SIGSTOP (AUTOFLOW_TEST_FREEZE_AT reached)."""
        try:
            return bool(self._process.status() == psutil.STATUS_STOPPED)
        except psutil.NoSuchProcess:
            return False

    def descendants(self) -> list[psutil.Process]:
        try:
            return list(self._process.children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def children_named(self, *markers: str) -> list[psutil.Process]:
        found = []
        for child in self.descendants():
            with contextlib.suppress(psutil.Error):
                if any(marker in " ".join(child.cmdline()) for marker in markers):
                    found.append(child)
        return found

    def kill(self) -> list[psutil.Process]:
        """SIGKILL the service alone (as the OOM killer would); returns its descendants of just before."""
        before = self.descendants()
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)
        return before

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def ensure_gone(self) -> None:
        """End the service and everything it started (SIGTERM, a grace period, then SIGKILL)."""
        if self.alive():
            end_tree([self._process])
        self.popen.wait(timeout=30)


class CommandLines:
    """Samples the command lines of a process and all its descendants, in a thread, until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.seen: dict[int, str] = {}
        self._root = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self._root)
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(process.pid, "\0".join(process.cmdline()))
            self._stop.wait(self._interval)

    def stop(self) -> dict[int, str]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen


class Deployment:
    """An inputs directory, an outputs directory, a database and an environment, run as a user would."""

    def __init__(
        self,
        root: Path,
        workflows_yml: str,
        notebooks: Mapping[str, tuple[str | None, list[str]]],
        *,
        db_uri: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        self.logs = root / "logs"
        self.markers = root / "markers"
        for folder in (self.inputs, self.markers, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        for name, (parameters, cells) in notebooks.items():
            write_notebook(self.inputs / name, *cells, parameters=parameters)
        (self.inputs / "workflows.yml").write_text(workflows_yml.replace("MARKERS", str(self.markers)))
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_"))},
            "AUTOFLOW_INPUTS_DIR": str(self.inputs),
            "AUTOFLOW_OUTPUTS_DIR": str(self.outputs),
            "AUTOFLOW_SECRETS_DIR": str(root / "no-secrets"),
            "AUTOFLOW_MAX_PARALLEL_NOTEBOOKS": "2",
            **({"AUTOFLOW_DB_URI": db_uri} if db_uri else {}),
            **(env or {}),
        }
        self._count = 0

    def _name(self, args: tuple[str, ...]) -> str:
        self._count += 1
        return f"{self._count:03d}-{'-'.join(args) or 'run'}".replace("/", "_")[:60]

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> Service:
        return Service(list(args), {**self.env, **(env or {})}, self.logs, self._name(args))

    def run(self, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None) -> Service:
        """Run a command to its end (killed after ``timeout``); the finished :class:`Service`."""
        service = self.start(*args, env=env)
        try:
            service.wait(timeout)
        except subprocess.TimeoutExpired:
            service.ensure_gone()
            raise AssertionError(f"autoflow {' '.join(args)} did not end within {timeout} s:\n{service.stderr[-3000:]}") from None
        return service

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @contextlib.contextmanager
    def store(self) -> Iterator[RunStore]:
        with RunStore(self.settings().db_url) as store:
            yield store

    def history(self) -> list[Attempt]:
        """The run history (empty before the service made the schema)."""
        from autoflow.errors import RunStoreError

        with self.store() as store:
            try:
                return store.history()
            except RunStoreError:
                return []

    def notebooks(self, prefix: str = "") -> list[Path]:
        return sorted((self.outputs / "notebooks").glob(f"{prefix}*.ipynb"))

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.iterdir()))


class OwnPostgres(Cluster):
    """The fault suite's PostgreSQL of its own: a :class:`~tests.pgcluster.Cluster` with password (SCRAM) auth over TCP."""

    def __init__(self) -> None:
        super().__init__(password=True, prefix="autoflow-faults-pg-")
