"""The service's liveness file, read by ``autoflow health`` (the container's HEALTHCHECK).

A running service writes ``$AUTOFLOW_OUTPUTS_DIR/.autoflow/heartbeat-<host>.json`` every
:data:`HEARTBEAT_INTERVAL` seconds from a daemon thread (one file per host, so several AutoFlow
processes can share an outputs directory) and deletes it when it stops.

While a tick runs the file also says when it started, since when it has been busy with the
same thing (the oldest run still running, else the end of the last run or the tick's start)
and the longest a run may take (:mod:`autoflow.run_bounds`), so ``autoflow health`` can tell
a hung run from a slow one. Its ``config`` section (:class:`ConfigState`) says whether
workflows.yml on disk is valid, or since when it is not while the service runs the
configuration it last loaded (:mod:`autoflow.reload`).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: seconds between two heartbeats of a running service
HEARTBEAT_INTERVAL = 30.0
HEARTBEAT_DIR = ".autoflow"
#: problem lines a heartbeat records of an invalid workflows.yml (their number is recorded too)
MAX_PROBLEMS = 5


@dataclass(frozen=True)
class ConfigState:
    """Whether workflows.yml on disk is what the service runs.

    ``loaded_at``: when the configuration the service runs was loaded. When the file on disk is
    invalid (or cannot be applied), ``problems`` are its problem lines (``workflows.yml:L:C: ...``)
    and ``invalid_since`` when that was first seen.
    """

    valid: bool
    loaded_at: dt.datetime
    problems: tuple[str, ...] = ()
    invalid_since: dt.datetime | None = None
    #: how many problems there are, when ``problems`` holds only the first few (read from a heartbeat)
    problem_count: int | None = None

    @property
    def count(self) -> int:
        """The number of problems."""
        return len(self.problems) if self.problem_count is None else self.problem_count

    def as_json(self) -> dict[str, Any]:
        """The heartbeat's ``config`` section: the first :data:`MAX_PROBLEMS` problems and their number."""
        return {
            "state": "valid" if self.valid else "invalid",
            "loaded_at": _iso(self.loaded_at),
            "problems": list(self.problems[:MAX_PROBLEMS]),
            "problem_count": self.count,
            "invalid_since": _iso(self.invalid_since),
        }

    @classmethod
    def from_json(cls, data: Any) -> ConfigState:
        """Read :meth:`as_json`'s form back; raises ValueError, KeyError or TypeError when it is not that."""
        if data.get("state") not in ("valid", "invalid"):
            raise ValueError(f"unknown config state {data.get('state')!r}")
        problems = tuple(str(p) for p in data.get("problems") or ())
        since = data.get("invalid_since")
        return cls(
            valid=data["state"] == "valid",
            loaded_at=_utc(data["loaded_at"]),
            problems=problems,
            invalid_since=_utc(since) if since else None,
            problem_count=int(data.get("problem_count") or len(problems)),
        )


def heartbeat_path(outputs_dir: Path, host: str | None = None) -> Path:
    """Where the service on ``host`` (default: this one) writes its heartbeat."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host or socket.gethostname()) or "localhost"
    return Path(outputs_dir) / HEARTBEAT_DIR / f"heartbeat-{name}.json"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat() if moment else None


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def write_heartbeat(
    outputs_dir: Path,
    *,
    state: str,
    next_tick: dt.datetime | None = None,
    tick_started: dt.datetime | None = None,
    busy_since: dt.datetime | None = None,
    longest_run: float | None = None,
    config: ConfigState | None = None,
) -> Path:
    """Record that this process's service is alive; ``state`` is "waiting" or "ticking".

    Written atomically (a reader never sees half a file): ``{"pid", "host", "state",
    "written_at", "next_tick", "tick_started_at", "busy_since", "longest_run_seconds", "config"}``
    with UTC ISO times (``config``: :meth:`ConfigState.as_json`, or null). Returns the path.
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
        "config": config.as_json() if config is not None else None,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)
    return path


class HeartbeatWriter:
    """Keeps the heartbeat file fresh while the service runs; :meth:`stop` deletes it.

    ``longest_run``: seconds a run may take (recorded for ``autoflow health``; the service sets it
    again when it reloads workflows.yml). ``runs_busy_since``: the start of the oldest run still
    running, else the end of the last run (None before any). ``config_state``: whether workflows.yml
    on disk is what the service runs (None: not recorded).
    """

    def __init__(
        self,
        outputs_dir: Path,
        interval: float = HEARTBEAT_INTERVAL,
        *,
        longest_run: float | None = None,
        runs_busy_since: Callable[[], dt.datetime | None] | None = None,
        config_state: Callable[[], ConfigState | None] | None = None,
    ) -> None:
        self.outputs_dir = Path(outputs_dir)
        self.interval = interval
        self.longest_run = longest_run
        self.runs_busy_since = runs_busy_since
        self.config_state = config_state
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
                    config=self.config_state() if self.config_state is not None else None,
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
