"""``autoflow health``: is the service that writes to this outputs directory alive? (exit 0 or 1)

The container's HEALTHCHECK runs it. The service proves it is alive with a heartbeat file,
``$AUTOFLOW_OUTPUTS_DIR/.autoflow/heartbeat-<host>.json`` (see :mod:`autoflow.heartbeat`), one per
host so that several AutoFlow processes can share an outputs directory. When this host has
written none (yet), a running ``autoflow`` service process whose AUTOFLOW_OUTPUTS_DIR is this
one counts as healthy instead.

A live service can still be stuck in a tick: a run (or the tick's own work) busy for longer than
the longest allowed run (:mod:`autoflow.run_bounds`, as the service recorded it in the heartbeat)
is hung, and the service unhealthy.

When workflows.yml on disk is invalid, a second line says so (since when, how many problems, the
first one) and when the configuration the service runs was loaded. That alone leaves the service
healthy (exit 0): it runs the last valid configuration, and a restart (what a failing container
healthcheck leads to) would not help: the service would refuse to start with the broken file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autoflow.cli.app import Application
from autoflow.heartbeat import HEARTBEAT_INTERVAL, ConfigState, heartbeat_path

HELP = "exit 0 if the service writing to the outputs directory is alive, else 1 (for container health checks)"
#: a heartbeat older than this means the service is stuck (default of --max-age)
DEFAULT_MAX_AGE = 4 * HEARTBEAT_INTERVAL


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("health", help=HELP, description=HELP)
    parser.add_argument(
        "--max-age", type=float, default=DEFAULT_MAX_AGE, metavar="SECONDS",
        help=f"a heartbeat older than this is unhealthy (default: {DEFAULT_MAX_AGE:g})",
    )  # fmt: skip


def run(app: Application, args: argparse.Namespace) -> int:
    if args.max_age <= 0:
        app.abort("--max-age must be greater than 0", 2)
    outputs = app.settings.outputs_dir
    healthy, message = check(outputs, max_age=args.max_age, longest_run=lambda: _longest_run(app))
    print(f"{'healthy' if healthy else 'unhealthy'}: {message}")
    return 0 if healthy else 1


def _longest_run(app: Application) -> float | None:
    """The longest allowed run of the workflows in the inputs directory; None when it cannot be read."""
    from autoflow.errors import AutoFlowError
    from autoflow.run_bounds import longest_allowed_run

    try:
        config = app.load_config()
    except AutoFlowError:
        return None
    return longest_allowed_run(config, app.settings)


def _settings_longest_run() -> float:
    """The bound when neither the heartbeat nor the inputs directory says more: from the settings alone."""
    from autoflow.run_bounds import longest_allowed_run
    from autoflow.settings import Settings

    return longest_allowed_run(None, Settings.from_env())


def check(
    outputs_dir: Path,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    now: dt.datetime | None = None,
    longest_run: Callable[[], float | None] = lambda: None,
) -> tuple[bool, str]:
    """(healthy, why) for the service of this host writing to ``outputs_dir``.

    ``longest_run`` gives the longest allowed run of the configuration on disk now (None when it
    cannot be read); it counts when the heartbeat records none, or a smaller one (a run started
    before the service reloaded workflows.yml may still have the longer timeout it had).

    A second line (after a newline) tells when workflows.yml on disk is invalid and the service
    runs the last valid configuration; that alone does not make it unhealthy.
    """
    path = heartbeat_path(outputs_dir)
    if path.exists():
        return _check_heartbeat(path, max_age, now or dt.datetime.now(dt.timezone.utc), longest_run)
    pid = find_service_process(outputs_dir)
    if pid is None:
        return False, f"no AutoFlow service is running for {outputs_dir} (and it has no heartbeat file {path})"
    return True, f"the AutoFlow service (pid {pid}) is running for {outputs_dir}; no heartbeat written yet"


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def _duration(seconds: float) -> str:
    """``seconds`` in words: "45 s", "12 min", "6 h 10 min"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours and minutes else f"{hours} h" if hours else f"{minutes} min"


def _check_heartbeat(path: Path, max_age: float, now: dt.datetime, longest_run: Callable[[], float | None]) -> tuple[bool, str]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        written = _utc(record["written_at"])
        pid = int(record["pid"])
        tick_started = _utc(record["tick_started_at"]) if record.get("tick_started_at") else None
        busy_since = _utc(record["busy_since"]) if record.get("busy_since") else tick_started
        recorded_bound = float(record["longest_run_seconds"]) if record.get("longest_run_seconds") else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"cannot read the heartbeat {path}: {exc}"
    age = (now - written).total_seconds()
    if not _alive(pid):
        return False, f"the service (pid {pid}) that wrote {path} is not running"
    if age > max_age:
        return False, f"the last heartbeat in {path} is {age:.0f} s old (more than {max_age:g} s): the service is stuck"
    state = record.get("state") or "running"
    if state == "ticking" and tick_started is not None and busy_since is not None:
        busy = (now - busy_since).total_seconds()
        bound = recorded_bound
        if bound is None or busy > bound:
            known = [b for b in (recorded_bound, longest_run()) if b is not None]
            bound = max(known) if known else _settings_longest_run()
        if busy > bound:
            return False, _hung(tick_started, busy_since, bound) + _config_note(record)
    return True, f"heartbeat {max(age, 0):.0f} s ago from pid {pid} ({state})" + _config_note(record)


def _config_note(record: dict[str, Any]) -> str:
    """A second line when the heartbeat says workflows.yml on disk is invalid, else ""."""
    try:
        config = ConfigState.from_json(record["config"]) if record.get("config") else None
    except (ValueError, KeyError, TypeError, AttributeError):  # an older or damaged record: nothing to say
        return ""
    if config is None or config.valid:
        return ""
    since = config.invalid_since or config.loaded_at
    loaded = f"{config.loaded_at:%H:%M} UTC" if config.loaded_at.date() == since.date() else f"{config.loaded_at:%Y-%m-%d %H:%M} UTC"
    first = f"; first: {config.problems[0]}" if config.problems else ""
    count = f"{config.count} problem{'' if config.count == 1 else 's'}"
    return (
        f"\nworkflows.yml on disk is invalid since {since:%Y-%m-%d %H:%M} UTC ({count}{first}); "
        f"the service runs the configuration loaded at {loaded}. Still healthy (exit 0): the service keeps running; "
        "fix workflows.yml (`autoflow validate` lists every problem) and the service picks it up by itself"
    )


def _hung(tick_started: dt.datetime, busy_since: dt.datetime, bound: float) -> str:
    started = f"the tick started at {tick_started:%Y-%m-%d %H:%M:%S} UTC and"
    if busy_since > tick_started:  # a run started (or the last one ended) then
        started += f" has been stuck since {busy_since:%Y-%m-%d %H:%M:%S} UTC,"
    return (
        f"{started} has run longer than the longest allowed run, {_duration(bound)}: a run is hung; "
        "restart the service (the run is tried again)"
    )


def _alive(pid: int) -> bool:
    import psutil

    try:
        status: str = psutil.Process(pid).status()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def service_arguments(cmdline: Sequence[str]) -> list[str] | None:
    """The arguments after ``autoflow`` in ``cmdline`` (``python -m autoflow ...`` or the
    ``autoflow`` script), or None if it is not an ``autoflow`` command line."""
    for i, word in enumerate(cmdline[:-1]):
        if word == "-m" and cmdline[i + 1] == "autoflow":
            return list(cmdline[i + 2 :])
    for i, word in enumerate(cmdline[:2]):
        if os.path.basename(word) == "autoflow":
            return list(cmdline[i + 1 :])
    return None


def is_service(arguments: Sequence[str]) -> bool:
    """Whether ``autoflow ARGUMENTS`` runs the service (no command, or ``run``)."""
    words = list(arguments)
    while words:
        word = words.pop(0)
        if word == "--inputs":
            words = words[1:]
        elif word.startswith("-"):
            continue
        else:
            return word == "run"
    return True


def find_service_process(outputs_dir: Path) -> int | None:
    """The pid of a live ``autoflow`` service process of this user whose outputs are ``outputs_dir``."""
    import psutil

    wanted = Path(outputs_dir).resolve()
    for process in psutil.process_iter(["pid", "cmdline"]):
        info: dict[str, Any] = process.info
        arguments = service_arguments(info.get("cmdline") or [])
        if info["pid"] == os.getpid() or arguments is None or not is_service(arguments):
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            outputs = process.environ().get("AUTOFLOW_OUTPUTS_DIR")
            if outputs and (Path(process.cwd()) / outputs).resolve() == wanted:
                return int(info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None
