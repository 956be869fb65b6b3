"""``autoflow rerun RUN_ID``: a new attempt of a run, whatever became of its earlier ones."""

from __future__ import annotations

import argparse

from autoflow.cli.app import Application

HELP = "run a run again now (a new attempt, also when it succeeded); RUN_ID is an id `autoflow status` shows"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("rerun", help=HELP, description=HELP + "; the history keeps every attempt")
    parser.add_argument("run_id", type=int, metavar="RUN_ID", help="the id of any attempt of the run (`autoflow status` lists them)")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.errors import UsageError
    from autoflow.planning import DueRun
    from autoflow.store import RunStore

    config = app.load_config()
    settings = app.settings
    settings.outputs_dir  # noqa: B018 - name the variable when it is missing
    app.setup_logging()
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
        store.expire_abandoned()
        chosen = store.attempt(args.run_id)
        if chosen is None:
            raise UsageError(f"there is no run with id {args.run_id} in the run history; `autoflow status` lists the ids")
        if chosen.workflow not in config.workflows:
            app.abort(f"run {args.run_id} is of workflow '{chosen.workflow}', which workflows.yml no longer defines")
        latest = store.attempts_of(chosen.key)[-1]
        if latest.state == "running":
            app.abort(
                f"{chosen.workflow} for {chosen.reference_date} is running now (attempt {latest.attempt}, id {latest.id}); "
                f"`autoflow cancel {latest.id}` stops it"
            )
        run = DueRun(
            chosen.workflow, chosen.parameters, chosen.params_hash, chosen.reference_date, tuple(latest.date_ranges),
            latest.attempt, f"rerun of attempt {latest.attempt} ({latest.state})",
        )  # fmt: skip
        from autoflow.prefect_env import configure_environment

        configure_environment()
        from autoflow.levers import launch_by_hand

        result = launch_by_hand(config, settings, store, [run], trigger="rerun")
        record = store.attempts_of(chosen.key)[-1]
    if result.not_claimed:
        app.abort(f"{chosen.workflow} for {chosen.reference_date} was claimed by another AutoFlow process at the same moment")
    if record.attempt == latest.attempt:
        app.abort(result.error or "the rerun did not start")
    for path in record.notebooks:
        print(f"notebook: {path}")
    for path in record.reports:
        print(f"report:   {path}")
    print(f"attempt {record.attempt} (id {record.id}): {record.state}")
    if record.state != "success":
        app.error(f"the rerun {record.state}; 'autoflow status {record.id}' shows it in full")
        return 1
    return 0
