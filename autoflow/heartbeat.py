"""The service's liveness file, read by ``autoflow health`` (the container's HEALTHCHECK).

A running service writes ``$AUTOFLOW_OUTPUTS_DIR/.autoflow/heartbeat-<host>.json`` every
:data:`HEARTBEAT_INTERVAL` seconds from a daemon thread (one file per host, so several AutoFlow
processes can share an outputs directory) and deletes it when it stops.

While a tick runs the file also says when it started, since when it has been busy with the
same thing (the oldest run still running, else the end of the last run or the tick's start)
and the longest a run may take (:mod:`autoflow.run_bounds`), so ``autoflow health`` can tell
a hung run from a slow one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: seconds between two heartbeats of a running service
HEARTBEAT_INTERVAL = 30.0
HEARTBEAT_DIR = ".autoflow"


def heartbeat_path(outputs_dir: Path, host: str | None = None) -> Path:
    """Where the service on ``host`` (default: this one) writes its heartbeat."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host or socket.gethostname()) or "localhost"
    return Path(outputs_dir) / HEARTBEAT_DIR / f"heartbeat-{name}.json"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat() if moment else None


def write_heartbeat(
    outputs_dir: Path,
    *,
    state: str,
    next_tick: dt.datetime | None = None,
    tick_started: dt.datetime | None = None,
    busy_since: dt.datetime | None = None,
    longest_run: float | None = None,
) -> Path:
    """Record that this process's service is alive; ``state`` is "waiting" or "ticking".

    Written atomically (a reader never sees half a file): ``{"pid", "host", "state",
    "written_at", "next_tick", "tick_started_at", "busy_since", "longest_run_seconds"}`` with
    UTC ISO times. Returns the path.
    """
    path = heartbeat_path(outputs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "state": state,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "next_tick": _iso(next_tick),
        "tick_started_at": _iso(tick_started),
        "busy_since": _iso(busy_since),
        "longest_run_seconds": longest_run,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)
    return path


class HeartbeatWriter:
    """Keeps the heartbeat file fresh while the service runs; :meth:`stop` deletes it.

    ``longest_run``: seconds a run may take (recorded for ``autoflow health``). ``runs_busy_since``:
    the start of the oldest run still running, else the end of the last run (None before any).
    """

    def __init__(
        self,
        outputs_dir: Path,
        interval: float = HEARTBEAT_INTERVAL,
        *,
        longest_run: float | None = None,
        runs_busy_since: Callable[[], dt.datetime | None] | None = None,
    ) -> None:
        self.outputs_dir = Path(outputs_dir)
        self.interval = interval
        self.longest_run = longest_run
        self.runs_busy_since = runs_busy_since
        self.state = "waiting"
        self.next_tick: dt.datetime | None = None
        self.tick_started: dt.datetime | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="autoflow-heartbeat", daemon=True)
        self._warned = False

    def start(self) -> HeartbeatWriter:
        self.write()
        self._thread.start()
        return self

    def update(self, state: str, next_tick: dt.datetime | None = None) -> None:
        if state == "ticking" and self.state != "ticking":
            self.tick_started = dt.datetime.now(dt.timezone.utc)
        elif state != "ticking":
            self.tick_started = None
        self.state, self.next_tick = state, next_tick
        self.write()

    def busy_since(self) -> dt.datetime | None:
        """Since when the current tick has been busy with one thing: the oldest running run's
        start, else the later of the tick's start and the last run's end (None when waiting)."""
        if self.tick_started is None:
            return None
        runs = self.runs_busy_since() if self.runs_busy_since is not None else None
        return max(self.tick_started, runs) if runs is not None else self.tick_started

    def write(self) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            try:
                write_heartbeat(
                    self.outputs_dir, state=self.state, next_tick=self.next_tick, tick_started=self.tick_started,
                    busy_since=self.busy_since(), longest_run=self.longest_run,
                )  # fmt: skip
                self._warned = False
            except OSError as exc:  # a full or read-only disk must not stop the service
                if not self._warned:
                    log.warning("cannot write the heartbeat file (autoflow health will report unhealthy): %s", exc)
                    self._warned = True

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            self.write()

    def stop(self) -> None:
        """Stop beating and delete this process's heartbeat file (if it is still ours)."""
        with self._lock:
            self._stopped.set()
            path = heartbeat_path(self.outputs_dir)
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    path.unlink()
                    path.parent.rmdir()  # only when no other host's heartbeat is left in it
            except (OSError, ValueError, AttributeError):
                pass
