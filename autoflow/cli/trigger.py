"""``autoflow trigger WORKFLOW --date D``: run one workflow once, now, and record it."""

from __future__ import annotations

import argparse
import signal
from typing import TYPE_CHECKING

from autoflow.cli.app import Application

if TYPE_CHECKING:
    from autoflow.triggering import ManualRun

HELP = "run one workflow now for one reference date; prints the executed notebooks and reports"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("trigger", help=HELP, description=HELP)
    parser.add_argument("workflow", help="a workflow name from workflows.yml")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the reference date")
    add_entry_arguments(parser)
    parser.add_argument("--stencil", metavar="YAML", help="date stencil, e.g. '[[-6, 0]]' (default: the sensor entry's, else [0])")


def add_entry_arguments(parser: argparse.ArgumentParser) -> None:
    """``--entry N`` and ``--param NAME=VALUE``: which sensor entry's parameters a run by hand takes, and overrides."""
    parser.add_argument(
        "--entry", type=_entry_number, metavar="N",
        help="use the parameters and date stencil of the workflow's N-th sensor entry (1-based; needed when it has several)",
    )  # fmt: skip
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a workflow parameter, overriding the sensor entry's; VALUE is read as YAML, as in workflows.yml (3 is a number, 2016-01-01 a date)",
    )  # fmt: skip


def _entry_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sensor entry number (1, 2, ...)")
    return number


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.triggering import resolve_manual_run

    config = app.load_config()
    settings = app.settings
    wanted = resolve_manual_run(
        config, args.workflow, args.date, param_pairs=args.param, stencil_text=args.stencil, entry_number=args.entry
    )
    settings.outputs_dir  # noqa: B018 - name the variable when it is missing

    from autoflow.notebooks.kernel_pool import expect_kernels, first_kernels
    from autoflow.prefect_env import configure_environment, start_server_early

    configure_environment()
    app.setup_logging()
    # without PREFECT_API_URL, the temporary server starts first (the slowest; the run does not
    # wait for it), then the run's first kernels, while the run history and Prefect start
    start_server_early(settings.outputs_dir / "logs")
    expect_kernels(first_kernels([config.workflows[wanted.workflow]], runs=1))
    return _trigger(app, wanted)


def _trigger(app: Application, wanted: ManualRun) -> int:
    from autoflow.parameters import params_hash
    from autoflow.planning import DueRun
    from autoflow.prefect_env import prefect_api
    from autoflow.service import prepare_outputs
    from autoflow.store import RunKey, RunStore

    workflow, parameters, reference_date = wanted.workflow, dict(wanted.parameters), wanted.reference_date
    settings = app.settings
    prepare_outputs(settings)
    digest = params_hash(parameters)
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
        store.expire_abandoned()
        latest = store.latest_attempts([workflow]).get(RunKey(workflow, digest, reference_date))
        if latest is not None and latest.state == "running":
            app.abort(f"{workflow} for {reference_date} is already running (attempt {latest.attempt}, owner {latest.owner})", 1)
        run = DueRun(workflow, parameters, digest, reference_date, wanted.date_ranges, latest.attempt if latest else 0, "triggered by hand")
        # the run starts while a temporary Prefect server starts, and is recorded in Prefect once it answers
        with prefect_api(settings.outputs_dir / "logs", settings.log_level, wait=False):
            from autoflow.runs import Launcher, run_in_worker_thread

            launcher = Launcher(store, settings, trigger="manual")
            previous = signal.signal(signal.SIGTERM, _terminate)
            try:
                result = run_in_worker_thread(lambda: launcher.launch(run), "autoflow-trigger")
            except KeyboardInterrupt:
                store.interrupt(launcher.leases.active, "interrupted: autoflow trigger was stopped before the run finished")
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)
                launcher.close()
    if result.outcome is None:
        app.abort(f"{workflow} for {reference_date} was claimed by another AutoFlow process at the same moment", 1)
    for path in result.outcome.notebooks:
        print(f"notebook: {path}")
    for path in result.outcome.reports:
        print(f"report:   {path}")
    if not result.outcome.success:
        # the reason is in the log line above (printed once); say only where to look next
        where = f"; 'autoflow status {result.attempt.id}' shows it in full" if result.attempt is not None else ""
        app.error(f"the run failed (the reason is above){where}")
        return 1
    return 0
