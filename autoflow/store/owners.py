"""Who runs an attempt: ``host:pid:process-start`` and whether that process is gone.

The process start time guards against pid reuse: after a restart (say, a container whose
AutoFlow is pid 1 again) the pid is alive but it is a different process.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

import psutil

#: how far two readings of one process's start time may disagree (boot-time jitter)
START_TIME_TOLERANCE_SECONDS = 2.0


@dataclass(frozen=True)
class Owner:
    """A parsed owner id."""

    host: str
    pid: int
    started: dt.datetime

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started.isoformat(timespec='seconds')}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner named by ``text``, or None if it is not of the ``host:pid:start`` form."""
        host, _, rest = text.partition(":")
        pid_text, _, started_text = rest.partition(":")
        try:
            started = dt.datetime.fromisoformat(started_text)
            pid = int(pid_text)
        except ValueError:
            return None
        if not host or started.tzinfo is None:
            return None
        return cls(host, pid, started)


def _process_start(pid: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(psutil.Process(pid).create_time(), dt.UTC)


def owner_id() -> str:
    """``host:pid:process-start-iso`` for the calling process."""
    pid = os.getpid()
    return str(Owner(socket.gethostname(), pid, _process_start(pid)))


def is_gone_from_this_host(owner: str) -> bool:
    """True if ``owner`` names a process on this host that no longer runs.

    Owners on other hosts, and owner ids that do not parse, are never "gone": only their
    lease (missing heartbeats) can tell.
    """
    parsed = Owner.parse(owner)
    if parsed is None or parsed.host != socket.gethostname():
        return False
    try:
        process = psutil.Process(parsed.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = dt.datetime.fromtimestamp(process.create_time(), dt.UTC)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    return abs((started - parsed.started).total_seconds()) > START_TIME_TOLERANCE_SECONDS
