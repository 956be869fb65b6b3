"""Notifications about runs and late data, sent with Apprise to the targets workflows.yml lists.

A :class:`Notifier` is made once at start (:meth:`Notifier.check` fills in each target's
``${NAME}`` secrets and has Apprise accept its URL). Events are queued and delivered by one
background thread per target, so a slow or unreachable service never fails or delays a run;
what could not be delivered is logged once per target each :meth:`Notifier.flush_tick`.
Logs name a target by its position in workflows.yml and its scheme and host, never the rest of
its URL (which may hold tokens).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoflow.errors import SettingsError
from autoflow.parameters import params_hash
from autoflow.planning import LOST_PREFIXES
from autoflow.redaction import Redactor
from autoflow.settings import Secret, Settings, read_secret
from autoflow.spec.durations import describe_duration
from autoflow.spec.models import DEFAULT_MAX_ATTEMPTS, AutoFlowConfig, NotificationSpec, SensorEntry
from autoflow.spec.notification_urls import references, shown_url, substitute
from autoflow.store.attempts import Attempt

__all__ = ["NotificationError", "Notifier", "notify_run_end", "resolve_url"]

log = logging.getLogger(__name__)

#: seconds Apprise may take to connect to a service / to read its answer (unless the URL sets cto= / rto=)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: messages waiting for one target beyond this are dropped (and counted in its next warning)
MAX_QUEUED = 200
#: the short reason quoted from a run's error
MAX_REASON_CHARS = 300

#: event -> Apprise message type (the ``type`` field of a JSON webhook)
_MESSAGE_TYPES = {"failure": "failure", "gave_up": "failure", "recovery": "success", "success": "success", "late_data": "warning"}


class NotificationError(SettingsError):
    """A notification target cannot be used: a secret it refers to is missing, or Apprise rejects its URL."""


def resolve_url(spec: NotificationSpec, env: Mapping[str, str], secrets_dir: Path) -> Secret:
    """``spec``'s URL with each ``${NAME}`` replaced by the Docker secret NAME or else the variable NAME."""

    def value(name: str) -> str:
        secret = read_secret(name, env, secrets_dir)
        if secret is None:
            raise NotificationError(
                f"{spec.position}: notification URL refers to ${{{name}}}, which is neither a Docker secret "
                f"({secrets_dir / name}) nor an environment variable; create the secret or set {name}"
            )
        return secret.get()

    return Secret(substitute(spec.url_template, value))


class _QuietApprise(logging.Filter):
    """Drops Apprise's (and urllib3's) log records in the threads that send: they can quote the
    URL, tokens and all; we log our own."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "quiet", False)


_quiet = _QuietApprise()
for _name in ("apprise", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_quiet)


def _apprise_plugin(url: str) -> Any:
    """Apprise's sender for ``url``, with short timeouts; None when Apprise cannot use the URL."""
    import apprise

    was_quiet = getattr(_quiet.local, "quiet", False)
    _quiet.local.quiet = True
    try:
        plugin = apprise.Apprise.instantiate(url)
    finally:
        _quiet.local.quiet = was_quiet
    if plugin is None:
        return None
    cls = type(plugin)
    # a timeout the URL does not set (cto=, rto=) is shortened: a notification must not hold a thread for long
    if plugin.socket_connect_timeout == cls.socket_connect_timeout:
        plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, CONNECT_TIMEOUT)
    if plugin.socket_read_timeout == cls.socket_read_timeout:
        plugin.socket_read_timeout = min(plugin.socket_read_timeout, READ_TIMEOUT)
    return plugin


@dataclass(frozen=True)
class _Message:
    title: str
    body: str
    type: str


@dataclass
class _Staleness:
    """Since when a sensor entry's newest reference date has been what it is."""

    newest: dt.date | None
    since: dt.datetime
    notified: bool = False


class _Target:
    """One notification target: its resolved URL, a queue and the thread that delivers from it."""

    def __init__(self, spec: NotificationSpec, url: Secret) -> None:
        self.spec = spec
        self.url = url
        #: what logs may show of it
        self.shown = f"{spec.position} ({shown_url(url.get())})"
        self._queue: queue.Queue[_Message | None] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return f"_Target({self.shown})"

    def put(self, message: _Message) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_all, name=f"autoflow-notify {self.shown}", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def close(self, deadline: float) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not self._thread.is_alive():
                self._thread = None  # a later message starts a new one

    def take_failures(self) -> tuple[int, int]:
        """(messages not delivered, messages dropped) since the last call."""
        with self._lock:
            counts = (self._failed, self._dropped)
            self._failed = self._dropped = 0
        return counts

    def _deliver_all(self) -> None:
        _quiet.local.quiet = True
        while (message := self._queue.get()) is not None:
            try:
                delivered = self._deliver(message)
            except Exception:  # a sender's bug must not end the thread: every later message would be lost
                delivered = False
            if not delivered:
                with self._lock:
                    self._failed += 1

    def _deliver(self, message: _Message) -> bool:
        import apprise

        plugin = _apprise_plugin(self.url.get())  # a new one each time: a plugin throttles its own repeats
        if plugin is None:
            return False
        sender = apprise.Apprise()
        sender.add(plugin)
        return bool(
            sender.notify(
                body=message.body,
                title=message.title,
                notify_type=apprise.NotifyType(message.type),
                body_format=apprise.NotifyFormat.TEXT,
            )
        )


class Notifier:
    """Sends the events of workflows.yml's ``notifications`` to their targets, in the background."""

    def __init__(
        self, config: AutoFlowConfig, settings: Settings, *, env: Mapping[str, str] | None = None, state_file: Path | None = None
    ) -> None:
        """``state_file``: where what :meth:`check_late_data` has seen is kept, so a restart neither
        forgets how long an entry has been stale nor tells about it again (None: memory only)."""
        self._specs = config.notifications
        self._env = os.environ if env is None else env
        self._secrets_dir = settings.secrets_dir
        self._redactor = Redactor.from_settings(settings)
        self._host = socket.gethostname()
        self._targets: list[_Target] | None = None
        self._lock = threading.Lock()
        self._staleness: dict[str, _Staleness] | None = None
        self._state_file = state_file

    def __repr__(self) -> str:
        return f"Notifier({len(self._specs)} targets)"

    def check(self) -> None:
        """Fill in each target's secrets and have Apprise accept its URL; NotificationError if one fails."""
        problems: list[str] = []
        targets: list[_Target] = []
        for spec in self._specs:
            try:
                url = resolve_url(spec, self._env, self._secrets_dir)
            except NotificationError as exc:
                problems.append(str(exc))
                continue
            if _apprise_plugin(url.get()) is None:
                problems.append(
                    f"{spec.position}: Apprise cannot send to the notification URL {shown_url(url.get())}"
                    f"{' (with its secrets filled in)' if references(spec.url_template) else ''}; "
                    "check it against the Apprise wiki's page for that service"
                )
                continue
            targets.append(_Target(spec, url))
        if problems:
            raise NotificationError("\n".join(problems))
        with self._lock:
            self._targets = targets

    # -- events -----------------------------------------------------------------------------

    def run_ended(
        self,
        attempt: Attempt,
        *,
        previous: Attempt | None,
        gave_up: bool,
        notebook: str | None,
        max_attempts: int | None = None,
    ) -> None:
        """Notify the end of ``attempt`` (``failure``, ``gave_up``, ``success``, ``recovery``); returns at once.

        ``previous`` is the run's attempt before this one; ``gave_up`` is True when this failure used
        the run's last allowed attempt (``max_attempts``, if given, is shown as "attempt 2 of 3");
        ``notebook`` is the executed notebook to cite (default: the attempt's last one).
        """
        if not self._specs or attempt.state not in ("failed", "success"):
            return
        cited = notebook or (attempt.notebooks[-1] if attempt.notebooks else None)
        if attempt.state == "failed":
            event = "gave_up" if gave_up else "failure"
            message = self._run_message(event, attempt, cited, max_attempts)
            # a target listening for failures only still hears about the last one
            self._send(message, lambda events: event in events or (event == "gave_up" and "failure" in events))
            return
        success = self._run_message("success", attempt, cited, max_attempts)
        if previous is not None and previous.state == "failed":
            recovery = self._run_message("recovery", attempt, cited, max_attempts)
            self._send(recovery, lambda events: "recovery" in events)
            self._send(success, lambda events: "success" in events and "recovery" not in events)
        else:
            self._send(success, lambda events: "success" in events)

    def check_late_data(self, entries: Sequence[SensorEntry], newest_dates: Mapping[int, dt.date | None], now: dt.datetime) -> None:
        """Notify ``late_data`` once for each entry whose newest reference date has not changed for its ``late_data_after``.

        ``newest_dates`` maps an entry's index in ``entries`` to the newest reference date available
        for it (None: none yet); an entry left out (its source failed this tick) keeps its clock. Called every tick; an entry is told about again only after a new
        date arrived and then went stale once more.
        """
        if not self._specs:
            return
        if self._staleness is None:
            self._staleness = self._load_staleness()
        changed = False
        for index, entry in enumerate(entries):
            if entry.late_data_after is None or index not in newest_dates:
                continue
            newest = newest_dates[index]
            key = f"{entry.workflow_name}:{params_hash(entry.parameters)}"
            state = self._staleness.get(key)
            if state is None or state.newest != newest:
                self._staleness[key] = _Staleness(newest, now)
                changed = True
                continue
            if not state.notified and (now - state.since).total_seconds() >= entry.late_data_after:
                state.notified = changed = True
                self._send(self._late_message(entry, state, now), lambda events: "late_data" in events)
        if changed:
            self._save_staleness()

    def _load_staleness(self) -> dict[str, _Staleness]:
        if self._state_file is None:
            return {}
        try:
            data = json.loads(self._state_file.read_text())
            return {
                key: _Staleness(
                    dt.date.fromisoformat(value["newest"]) if value["newest"] else None,
                    dt.datetime.fromisoformat(value["since"]),
                    bool(value["notified"]),
                )
                for key, value in data.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("late data: cannot read %s (%s); starting afresh", self._state_file, exc)
            return {}

    def _save_staleness(self) -> None:
        if self._state_file is None or self._staleness is None:
            return
        data = {
            key: {"newest": s.newest.isoformat() if s.newest else None, "since": s.since.isoformat(), "notified": s.notified}
            for key, s in self._staleness.items()
        }
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self._state_file.with_suffix(".partial")
            partial.write_text(json.dumps(data, indent=1))
            partial.replace(self._state_file)
        except OSError as exc:
            log.warning("late data: cannot write %s (%s)", self._state_file, exc)

    # -- delivery ---------------------------------------------------------------------------

    def flush_tick(self) -> None:
        """Log (once per target) what could not be delivered since the last call. Call at the end of each tick."""
        for target in self._targets or ():
            failed, dropped = target.take_failures()
            if failed or dropped:
                lost = f"{failed} notification(s) could not be delivered" if failed else ""
                also = f"{'; ' if lost else ''}{dropped} dropped because too many were waiting" if dropped else ""
                log.warning(
                    "notification target %s: %s%s; check the service is reachable from this host and the URL is right",
                    target.shown, lost, also,
                )

    def close(self, timeout: float = 10) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds in all; then log what failed."""
        deadline = time.monotonic() + timeout
        for target in self._targets or ():
            target.close(deadline)
        self.flush_tick()

    def _send(self, message: _Message, wants: Any) -> None:
        for target in self._ready_targets():
            if wants(target.spec.events):
                target.put(message)

    def _ready_targets(self) -> list[_Target]:
        """The targets, resolved now if :meth:`check` was not called (those that fail are left out and logged)."""
        with self._lock:
            if self._targets is None:
                targets = []
                for spec in self._specs:
                    try:
                        targets.append(_Target(spec, resolve_url(spec, self._env, self._secrets_dir)))
                    except NotificationError as exc:
                        log.warning("notification target left out: %s", exc)
                self._targets = targets
            return self._targets

    # -- messages ---------------------------------------------------------------------------

    def _run_message(self, event: str, attempt: Attempt, notebook: str | None, max_attempts: int | None) -> _Message:
        what = f"{attempt.workflow} for {attempt.reference_date.isoformat()}"
        of = f" of {max_attempts}" if max_attempts else ""
        outcome = {
            "failure": f"failed (attempt {attempt.attempt}{of})",
            "gave_up": f"gave up after {attempt.attempt} attempt{'s' if attempt.attempt != 1 else ''}",
            "recovery": f"recovered (attempt {attempt.attempt}{of})",
            "success": f"succeeded (attempt {attempt.attempt}{of})" if attempt.attempt > 1 else "succeeded",
        }[event]
        lines = [
            f"Workflow: {attempt.workflow}",
            f"Reference date: {attempt.reference_date.isoformat()}",
            f"Attempt: {attempt.attempt}{of}",
            f"Outcome: {outcome}",
        ]
        if attempt.state == "failed":
            lines.append(f"Reason: {_short_reason(attempt.error)}")
        lines.append(f"Parameters: {_parameters(attempt.parameters)}")
        lines.append(f"Notebook: {notebook or 'none was executed'}")
        lines.append(f"Host: {self._host}")
        if attempt.executor:
            lines.append(f"Executed by: {attempt.executor}")
        return self._message(f"AutoFlow: {what} {outcome}", lines, _MESSAGE_TYPES[event])

    def _late_message(self, entry: SensorEntry, state: _Staleness, now: dt.datetime) -> _Message:
        assert entry.late_data_after is not None
        waited = describe_duration((now - state.since).total_seconds())
        newest = state.newest.isoformat() if state.newest else "none yet"
        lines = [
            f"Workflow: {entry.workflow_name}",
            f"Parameters: {_parameters(entry.parameters)}",
            f"Newest reference date: {newest}",
            f"No new reference date since: {state.since.isoformat(timespec='seconds')} ({waited}; "
            f"late_data after {describe_duration(entry.late_data_after)})",
            f"Host: {self._host}",
        ]
        if entry.position is not None:
            lines.append(f"Sensor entry: {entry.position}")
        return self._message(f"AutoFlow: no new data for {entry.workflow_name} for {waited}", lines, _MESSAGE_TYPES["late_data"])

    def _message(self, title: str, lines: list[str], kind: str) -> _Message:
        return _Message(self._redactor.text(title), self._redactor.text("\n".join(lines)), kind)


def _short_reason(error: str | None) -> str:
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else "no error was recorded"
    return first if len(first) <= MAX_REASON_CHARS else first[: MAX_REASON_CHARS - 1] + "…"


def _parameters(parameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items()) or "none"


def notify_run_end(notifier: Notifier, config: AutoFlowConfig, store: Any, attempt_id: int) -> None:
    """Tell ``notifier`` how run attempt ``attempt_id`` ended, as the run history has it: whether
    it used the run's last attempt (its sensor entry's ``max_attempts``, counted from the latest
    attempt an operator started) and how the attempt before it ended. Never raises."""
    if not config.notifications:
        return
    try:
        attempt = store.attempt(attempt_id)
        if attempt is None or attempt.state not in ("failed", "success"):
            return
        attempts = [a for a in store.attempts_of(attempt.key) if a.attempt <= attempt.attempt]
        previous = attempts[-2] if len(attempts) > 1 else None
        entry = config.sensor.entry_for(attempt.workflow, attempt.params_hash)
        max_attempts = entry.max_attempts if entry is not None else DEFAULT_MAX_ATTEMPTS
        budget_from = max((a.attempt for a in attempts if a.trigger != "sensor"), default=1)
        used = sum(1 for a in attempts if a.attempt >= budget_from and a.state == "failed" and not (a.error or "").startswith(LOST_PREFIXES))
        failed_notebook = next((n for n in reversed(attempt.notebooks)), None)
        notifier.run_ended(
            attempt, previous=previous, gave_up=attempt.state == "failed" and used >= max_attempts,
            notebook=failed_notebook, max_attempts=budget_from + max_attempts - 1,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a notification never fails a run
        log.warning("could not notify the end of run attempt %d: %s", attempt_id, exc)
