"""``autoflow status``: the run history, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from autoflow.cli.app import Application

HELP = "show the run history (newest first)"
STATES = ("running", "success", "failed")
STATE_STYLE = {"success": "green", "failed": "bold red", "running": "yellow"}


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("status", help=HELP, description=HELP)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (logs stay on stderr)")
    parser.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    parser.add_argument("--state", choices=STATES, help="only attempts in this state")
    parser.add_argument("--limit", type=int, metavar="N", default=None, help="at most N attempts (default: 50 in the table, all in JSON)")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.store import RunStore

    app.setup_logging()
    settings = app.settings
    if args.limit is not None and args.limit < 1:
        app.abort("--limit must be 1 or more", 2)
    limit = args.limit if args.limit is not None or args.json else 50
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
        attempts = store.history(workflow=args.workflow, state=args.state, limit=limit)
    if args.json:
        json.dump([a.as_json() for a in attempts], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not attempts:
        print("No runs recorded yet" + (" matching those filters." if args.workflow or args.state else "."))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Run history ({settings.db_url_masked})", title_justify="left")
    for column in ("id", "workflow", "reference date", "state", "attempt", "started (UTC)", "took"):
        table.add_column(column, no_wrap=True)
    for column in ("parameters", "outputs / error"):
        table.add_column(column, overflow="fold")
    for a in attempts:
        took = f"{(a.finished_at - a.started_at).total_seconds():.1f} s" if a.finished_at else "—"
        params = ", ".join(f"{k}={v}" for k, v in a.as_json()["parameters"].items()) or "—"
        detail = a.error if a.error else "\n".join([*a.reports, *a.notebooks]) or "—"
        table.add_row(
            str(a.id), a.workflow, a.reference_date.isoformat(), f"[{STATE_STYLE[a.state]}]{a.state}[/]", str(a.attempt),
            a.started_at.strftime("%Y-%m-%d %H:%M:%S"), took, params, detail,
        )  # fmt: skip
    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    return 0
