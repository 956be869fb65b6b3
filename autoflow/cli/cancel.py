"""``autoflow cancel RUN_ID``: stop a running attempt wherever it executes, through the run history."""

from __future__ import annotations

import argparse
import getpass
import socket
import time

from autoflow.cli.app import Application

HELP = "stop a running run wherever it executes; the sensor does not retry it (`autoflow rerun` does)"
#: seconds to wait, by default, for the attempt to record that it stopped
WAIT_SECONDS = 30.0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("cancel", help=HELP, description=HELP)
    parser.add_argument("run_id", type=int, metavar="RUN_ID", help="the id of the running attempt, or of any attempt of the run (`autoflow status` lists them)")
    parser.add_argument("--no-wait", action="store_true", help="ask it to stop and return at once (default: wait until it has stopped)")


def _requester() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (e.g. a uid without a passwd entry)
        user = "someone"
    return f"{user}@{socket.gethostname()} (autoflow cancel)"


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.errors import UsageError
    from autoflow.store import RunStore

    settings = app.settings
    app.setup_logging()
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        schema = store.schema_status()
        if schema == "missing":
            raise UsageError(f"there is no run history yet at {settings.db_url_masked}: nothing to cancel")
        if schema != "current":
            store.upgrade()
        chosen = store.attempt(args.run_id)
        if chosen is None:
            raise UsageError(f"there is no run with id {args.run_id} in the run history; `autoflow status` lists the ids")
        target = next((a for a in store.attempts_of(chosen.key) if a.state == "running"), chosen)
        label = f"{target.workflow} for {target.reference_date} (attempt {target.attempt}, id {target.id})"
        outcome = store.request_cancel(target.id, by=_requester())
        if outcome == "cancelled":
            print(f"{label}: cancelled before it started")
            _cancel_in_prefect(settings, target.flow_run_id, f"cancelled by {_requester()}")
            return 0
        if outcome not in ("requested", "already requested"):
            app.abort(f"{label} is not running: it {'succeeded' if outcome == 'success' else outcome}; nothing to cancel")
        where = f" on {target.executor}" if target.executor else ""
        print(f"{label}: asked to stop{where}; its process stops it within seconds")
        if args.no_wait:
            return 0
        deadline = time.monotonic() + WAIT_SECONDS
        record = target
        while time.monotonic() < deadline:
            record = store.attempt(target.id) or record
            if record.state != "running":
                break
            time.sleep(0.5)
    if record.state == "running":
        app.abort(
            f"{label} has not stopped within {WAIT_SECONDS:g} s: its process may be gone or busy; the request stays, "
            f"and the run is recorded cancelled once it stops or its lease runs out ({settings.run_lease_seconds:g} s)"
        )
    print(f"{label}: {record.state}" + (f": {record.error}" if record.error else ""))
    for path in record.notebooks:
        print(f"notebook: {path}")
    return 0 if record.state == "cancelled" else 1


def _cancel_in_prefect(settings: object, flow_run_id: str | None, reason: str) -> None:
    """A flow run queued on the work pool: cancel it in Prefect too (its worker would find the attempt
    cancelled and end it anyway)."""
    import os

    if flow_run_id is None or not os.environ.get("PREFECT_API_URL"):
        return
    from autoflow.prefect_env import configure_environment

    configure_environment()
    from autoflow.pool import cancel_flow_run

    cancel_flow_run(flow_run_id, reason)
