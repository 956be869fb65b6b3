"""``autoflow backfill WORKFLOW --from D --to D``: run a range of past reference dates again."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt

from autoflow.cli.app import Application
from autoflow.cli.trigger import add_entry_arguments

HELP = "run a workflow for a range of reference dates (those that never succeeded, by default)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("backfill", help=HELP, description=HELP + ", planned like the sensor plans, with its date stencil")
    parser.add_argument("workflow", help="a workflow name from workflows.yml")
    parser.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD", help="the first reference date")
    parser.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD", help="the last reference date (included)")
    add_entry_arguments(parser)
    parser.add_argument(
        "--reprocess", choices=("missing", "failed", "all"), default="missing",
        help="which runs: missing (never succeeded; the default), failed (latest attempt failed or was cancelled), all (succeeded ones too)",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print what would run and why, claim nothing")
    parser.add_argument("--newest-first", action="store_true", help="run the newest reference date first (default: oldest first)")


def _date(text: str, option: str) -> dt.date:
    from autoflow.errors import UsageError

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date like 2016-01-07") from None


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.errors import UsageError
    from autoflow.parameters import params_hash
    from autoflow.planning import plan_backfill
    from autoflow.scan import entry_source
    from autoflow.sources import union_of_dates
    from autoflow.store import RunStore
    from autoflow.spec.models import SensorEntry, frozen_map
    from autoflow.triggering import choose_entry, find_workflow, read_assignments, resolve_parameters

    config = app.load_config()
    settings = app.settings
    start, end = _date(args.start, "--from"), _date(args.end, "--to")
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}")
    workflow = find_workflow(config, args.workflow)
    entry = choose_entry(config, workflow.name, args.entry)
    parameters = resolve_parameters(workflow, entry, read_assignments(args.param))
    base = entry or SensorEntry(workflow.name)
    entry = dataclasses.replace(base, parameters=frozen_map(parameters))
    settings.outputs_dir  # noqa: B018 - name the variable when it is missing
    app.setup_logging()
    store_options = {"lease_seconds": settings.run_lease_seconds, "display_url": settings.db_url_masked, "read_only": args.dry_run}
    with RunStore(settings.db_url, **store_options) as store:  # type: ignore[arg-type]
        dates = union_of_dates(entry_source(config, settings, store, entry).available_dates())
        if not args.dry_run:
            store.upgrade()
            store.expire_abandoned()
            history = store.latest_states([workflow.name])
        else:
            history = store.latest_states([workflow.name]) if store.schema_status() == "current" else {}
        plan = plan_backfill(
            entry, dates, history, start=start, end=end, reprocess=args.reprocess,
            now=dt.datetime.now(dt.timezone.utc), lease_seconds=settings.run_lease_seconds, newest_first=args.newest_first,
        )  # fmt: skip
        label = f"{workflow.name}" + (f" ({', '.join(f'{k}={v}' for k, v in parameters.items())})" if parameters else "")
        print(f"backfill {label} from {start} to {end} (--reprocess {args.reprocess}): {len(plan.due)} to run, {len(plan.skipped)} skipped")
        for run in plan.due:
            print(f"  run   {run.reference_date}  {run.reason}")
        for skip in plan.skipped:
            print(f"  skip  {skip.reference_date}  {skip.reason}")
        if args.dry_run or not plan.due:
            if args.dry_run:
                print("dry run: nothing claimed")
            return 0
        digest = params_hash(parameters)
        from autoflow.prefect_env import configure_environment

        configure_environment()
        from autoflow.levers import launch_by_hand

        result = launch_by_hand(config, settings, store, plan.due, trigger="backfill")
        latest = store.latest_attempts([workflow.name])
    from autoflow.store import RunKey

    cancelled = f", {result.cancelled} cancelled" if result.cancelled else ""
    print(f"backfill done: {result.succeeded} succeeded, {result.failed} failed{cancelled}, {result.not_claimed} taken by another AutoFlow process")
    for run in plan.due:
        record = latest.get(RunKey(workflow.name, digest, run.reference_date))
        if record is not None and record.trigger == "backfill":
            print(f"  {record.state:9} {run.reference_date}  id {record.id}" + (f"  {record.error.splitlines()[0]}" if record.error else ""))
    if result.error:
        app.error(result.error)
        return 1
    return 0 if result.failed == 0 else 1
