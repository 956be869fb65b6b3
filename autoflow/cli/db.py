"""``autoflow db upgrade``: bring the run history database to the current schema."""

from __future__ import annotations

import argparse

from autoflow.cli.app import Application

HELP = "manage the run history database"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("db", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    actions.add_parser("upgrade", help="create or migrate the schema (the service also does this at start)")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.store import RunStore

    app.setup_logging()
    settings = app.settings
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
    print(f"run history at {settings.db_url_masked} is up to date")
    return 0
