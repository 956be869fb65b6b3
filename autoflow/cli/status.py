"""``autoflow status [RUN_ID]``: the run history as a compact table, one attempt in full, or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autoflow.cli.app import Application
from autoflow.errors import SettingsError
from autoflow.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from autoflow.store import Attempt

HELP = "show the run history (newest first), or one attempt in full"
STATES = ("running", "success", "failed", "cancelled")
STATE_STYLE = {"success": "green", "failed": "bold red", "running": "yellow", "cancelled": "magenta", "gave up": "bold red"}
#: columns of the table when stdout is not a terminal and $COLUMNS does not say
PIPED_WIDTH = 100
#: the workflow column gives way to the reason / report column beyond this many characters
WORKFLOW_MAX_WIDTH = 20


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("status", help=HELP, description=HELP)
    parser.add_argument("run_id", nargs="?", metavar="RUN_ID", help="show this attempt in full (an id from the table's first column)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (logs stay on stderr)")
    parser.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    parser.add_argument("--state", choices=STATES, help="only attempts in this state")
    parser.add_argument("--limit", type=int, metavar="N", default=None, help="at most N attempts (default: 50 in the table, all in JSON)")


def run(app: Application, args: argparse.Namespace) -> int:
    attempt_id = None
    if args.run_id is not None:
        try:
            attempt_id = int(args.run_id)
        except ValueError:
            app.abort(f"RUN_ID {args.run_id!r} is not a number: pass an id from the first column of 'autoflow status'", 2)
    if args.limit is not None and args.limit < 1:
        app.abort("--limit must be 1 or more", 2)
    app.setup_logging()
    settings = app.settings
    limit = args.limit if args.limit is not None or args.json else 50
    with app.read_history() as store:  # reads only: creates and migrates nothing
        if attempt_id is not None:
            attempt = store.attempt(attempt_id) if store is not None else None
            if attempt is None:
                app.abort(f"there is no run attempt {attempt_id} in {settings.db_url_masked}; 'autoflow status' lists the ids", 1)
            attempts = [attempt]
        else:
            attempts = store.history(workflow=args.workflow, state=args.state, limit=limit) if store is not None else []
        gave_up = gave_up_ids(app, store, attempts) if store is not None else set()
    if args.json:
        data = attempts[0].as_json() if attempt_id is not None else [a.as_json() for a in attempts]
        for item in [data] if isinstance(data, dict) else data:
            item["gave_up"] = item["id"] in gave_up
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    outputs = _outputs_dir(app)
    if attempt_id is not None:
        _console().print(attempt_details(attempts[0], outputs, gave_up=attempts[0].id in gave_up))
        return 0
    if not attempts:
        print("No runs recorded yet" + (" matching those filters." if args.workflow or args.state else "."))
        return 0
    more = f"the newest {limit} shown (--limit N for more); " if args.limit is None and len(attempts) == limit else ""
    table = history_table(attempts, outputs, gave_up=gave_up, title=f"Run history ({settings.db_url_masked})", caption=f"{more}'autoflow status ID' shows an attempt in full")
    _console().print(table)
    pool_line = work_pool_summary(settings, [a for a in attempts if a.state == "running"])
    if pool_line:
        print(pool_line)
    return 0


def _state(a: Attempt, gave_up: Collection[int]) -> str:
    return "gave up" if a.id in gave_up else a.state


def gave_up_ids(app: Application, store: object, attempts: Sequence[Attempt]) -> set[int]:
    """Ids of the failed attempts that are their run's latest and used its last attempt (by the
    sensor entry's ``max_attempts``); none when workflows.yml cannot be read."""
    from autoflow.errors import AutoFlowError
    from autoflow.planning import gave_up
    from autoflow.spec.models import DEFAULT_MAX_ATTEMPTS

    failed = [a for a in attempts if a.state == "failed"]
    if not failed:
        return set()
    try:
        config = app.load_config()
    except (AutoFlowError, OSError):
        return set()
    latest = store.latest_states({a.workflow for a in failed})  # type: ignore[attr-defined]
    ids: set[int] = set()
    for a in failed:
        prior = latest.get((a.workflow, a.params_hash, a.reference_date))
        entry = config.sensor.entry_for(a.workflow, a.params_hash)
        if prior is not None and prior.id == a.id and gave_up(prior, entry.max_attempts if entry else DEFAULT_MAX_ATTEMPTS):
            ids.add(a.id)
    return ids


def work_pool_summary(settings: Settings, running: Sequence[Attempt]) -> str | None:
    """With AUTOFLOW_WORK_POOL set: the pool's live workers and the runs waiting for one."""
    if not settings.work_pool or not os.environ.get("PREFECT_API_URL"):
        return None
    from autoflow.prefect_env import configure_environment

    configure_environment()
    from autoflow.pool import WorkPool, WorkPoolError

    queued = [a for a in running if a.executor is None and a.flow_run_id]
    try:
        status = WorkPool.describe(settings)
    except WorkPoolError as exc:
        return f"work pool: {exc}"
    waiting = f"{len(queued)} run(s) waiting for a worker" if queued else "no run waiting for a worker"
    if not status.online_workers:
        return f"work pool '{status.pool}': no live worker; {waiting} (start one: autoflow worker)"
    return f"work pool '{status.pool}': {len(status.online_workers)} live worker(s) ({', '.join(status.online_workers)}); {waiting}"


def _outputs_dir(app: Application) -> Path | None:
    try:
        return app.settings.outputs_dir
    except SettingsError:  # the history is in a database named by AUTOFLOW_DB_URI alone
        return None


def _console() -> Console:
    """A console for stdout: the terminal's width and colours, or plain text ``PIPED_WIDTH`` wide."""
    from rich.console import Console

    plain = {"markup": False, "emoji": False, "highlight": False}  # recorded text is shown as it is
    console = Console(**plain)  # type: ignore[arg-type]
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=PIPED_WIDTH, **plain)  # type: ignore[arg-type]
    return console


def history_table(
    attempts: Sequence[Attempt], outputs: Path | None, title: str | None = None, caption: str | None = None, gave_up: Collection[int] = ()
) -> object:
    """One line per attempt: id, workflow, date, state, attempt, duration and why it failed or what it made."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def shrinkable(text: str, style: str = "") -> Text:  # ellipsized, never wrapped
        return Text(text, style=style, no_wrap=True, overflow="ellipsis")

    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, title=title, title_justify="left",
        caption=caption, caption_justify="left",
    )  # fmt: skip
    table.add_column("id", justify="right", no_wrap=True, min_width=max(len(str(a.id)) for a in attempts))
    table.add_column(shrinkable("workflow"), overflow="ellipsis", max_width=WORKFLOW_MAX_WIDTH)
    table.add_column("date", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column(shrinkable("reason / report"), overflow="ellipsis")
    for a in attempts:
        table.add_row(
            str(a.id), shrinkable(a.workflow), a.reference_date.isoformat(), Text(_state(a, gave_up), style=STATE_STYLE.get(_state(a, gave_up), "")),
            str(a.attempt), took(a), shrinkable(summary(a, outputs), "dim" if a.state == "success" else ""),
        )  # fmt: skip
    return table


def attempt_details(a: Attempt, outputs: Path | None, *, gave_up: bool = False) -> object:
    """Everything recorded about one attempt, one field per row, long values wrapped."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, object]] = [
        ("run attempt", str(a.id)),
        ("workflow", a.workflow),
        ("reference date", a.reference_date.isoformat()),
        ("state", Text(a.state + (" (gave up: `autoflow rerun` runs it again)" if gave_up else ""), style=STATE_STYLE.get(a.state, ""))),
        ("attempt", f"{a.attempt} ({a.trigger})"),
        ("owner", a.owner or "—"),
        ("executed on" if a.state != "running" else "executes on", a.executor or ("— (queued: waiting for a worker)" if a.state == "running" and a.flow_run_id else "—")),
        ("started", f"{a.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("finished", f"{a.finished_at:%Y-%m-%d %H:%M:%S} UTC" if a.finished_at else f"— (last heartbeat {a.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"),
        ("took", took(a)),
        ("parameters", "\n".join(f"{k} = {v if isinstance(v, str) else json.dumps(v)}" for k, v in a.as_json()["parameters"].items()) or "none"),
        ("date ranges", "\n".join(f"{start} to {end}" for start, end in a.date_ranges) or "none"),
        ("outputs in", str(outputs) if outputs else "—"),
        ("notebooks", "\n".join(relative(p, outputs) for p in a.notebooks) or "none"),
        ("reports", "\n".join(relative(p, outputs) for p in a.reports) or "none"),
    ]
    if a.cancel_requested_at is not None:
        rows.append(("cancel asked", f"by {a.cancel_requested_by} at {a.cancel_requested_at:%Y-%m-%d %H:%M:%S} UTC"))
    if a.flow_run_id:
        rows.append(("Prefect flow run", a.flow_run_id))
    if a.error:
        rows.append(("error", Text(a.error, style="red")))
    for label, value in rows:
        grid.add_row(label, value)  # type: ignore[arg-type]
    return grid


def relative(path: str, outputs: Path | None) -> str:
    """``path`` relative to the outputs directory when it lies below it, else as recorded."""
    if outputs is None:
        return path
    try:
        return str(Path(path).relative_to(outputs))
    except ValueError:
        return path


def took(a: Attempt) -> str:
    """How long the attempt ran, e.g. ``4.2 s``, ``3m 07s``, ``2h 05m``; ``—`` while it runs."""
    if a.finished_at is None:
        return "—"
    seconds = max((a.finished_at - a.started_at).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def summary(a: Attempt, outputs: Path | None) -> str:
    """One line: the error's first line, the report made, or who is running it."""
    if a.state == "running":
        if a.executor is None and a.flow_run_id:
            return f"queued since {a.started_at:%m-%d %H:%M} UTC, waiting for a worker"
        where = a.executor or a.owner.partition(":")[0]  # owners are host:pid:process-start
        return f"since {a.started_at:%m-%d %H:%M} UTC" + (f" on {where}" if where else "")
    if a.error:
        first = next((line.strip() for line in a.error.splitlines() if line.strip()), "")
        return first.replace(f"{outputs}{os.sep}", "") if outputs else first
    if a.reports:
        more = f" (+{len(a.reports) - 1} more)" if len(a.reports) > 1 else ""
        return relative(a.reports[0], outputs) + more
    return f"{len(a.notebooks)} notebook(s), no report"
