"""``autoflow trigger WORKFLOW --date D``: run one workflow once, now, and record it."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
from typing import Any

from autoflow.cli.app import Application
from autoflow.errors import UsageError

HELP = "run one workflow now for one reference date; prints the executed notebooks and reports"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("trigger", help=HELP, description=HELP)
    parser.add_argument("workflow", help="a workflow name from workflows.yml")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the reference date")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a workflow parameter; VALUE is read as YAML, as in workflows.yml (3 is a number, 2016-01-01 a date)",
    )  # fmt: skip
    parser.add_argument("--stencil", metavar="YAML", help="date stencil, e.g. '[[-6, 0]]' (default: the first sensor entry's, else [0])")


def _yaml_value(text: str, what: str) -> Any:
    from autoflow.spec.yamlfile import YAMLFileError, parse, to_plain

    try:
        node = parse(text.encode(), what)
        return None if node is None else to_plain(node.value)
    except (YAMLFileError, TypeError, ValueError) as exc:
        raise UsageError(f"{what}: cannot read {text!r}: {exc}") from None


def parse_parameters(pairs: list[str], needed: frozenset[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r} must look like NAME=VALUE")
        if name not in needed:
            known = ", ".join(sorted(needed)) or "none"
            raise UsageError(f"parameter '{name}' is not used by this workflow (its parameters: {known})")
        values[name] = _yaml_value(raw, f"--param {name}")
    missing = sorted(needed - values.keys())
    if missing:
        raise UsageError(f"missing parameter(s) {', '.join(missing)}: pass each as --param NAME=VALUE")
    return values


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.date_stencil import DateStencil

    config = app.load_config()
    settings = app.settings
    workflow = config.workflows.get(args.workflow)
    if workflow is None:
        raise UsageError(f"unknown workflow '{args.workflow}'; workflows.yml defines: {', '.join(config.workflows)}")
    try:
        reference_date = dt.date.fromisoformat(args.date)
    except ValueError:
        raise UsageError(f"--date {args.date!r} is not a date like 2016-01-07") from None
    parameters = parse_parameters(args.param, workflow.workflow_parameters)
    if args.stencil is not None:
        try:
            stencil = DateStencil(_yaml_value(args.stencil, "--stencil"))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--stencil {args.stencil!r}: {exc}") from None
    else:
        entries = [e for e in config.sensor.workflows if e.workflow_name == workflow.name]
        stencil = entries[0].date_stencil if entries else DateStencil()
    try:
        date_ranges = tuple(stencil.as_date_pairs(reference_date))
    except ValueError as exc:
        raise UsageError(f"the date stencil does not apply at {reference_date}: {exc}") from None
    settings.outputs_dir  # noqa: B018 - name the variable when it is missing

    from autoflow.prefect_env import configure_environment

    configure_environment()
    app.setup_logging()
    return _trigger(app, workflow.name, parameters, reference_date, date_ranges)


def _trigger(app: Application, workflow: str, parameters: dict[str, Any], reference_date: dt.date, date_ranges: tuple[tuple[dt.date, dt.date], ...]) -> int:
    from autoflow.parameters import params_hash
    from autoflow.planning import DueRun
    from autoflow.prefect_env import prefect_api
    from autoflow.service import prepare_outputs
    from autoflow.store import RunKey, RunStore

    settings = app.settings
    prepare_outputs(settings)
    digest = params_hash(parameters)
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
        store.expire_abandoned()
        latest = store.latest_attempts([workflow]).get(RunKey(workflow, digest, reference_date))
        if latest is not None and latest.state == "running":
            app.abort(f"{workflow} for {reference_date} is already running (attempt {latest.attempt}, owner {latest.owner})", 1)
        run = DueRun(workflow, parameters, digest, reference_date, date_ranges, latest.attempt if latest else 0, "triggered by hand")
        with prefect_api(settings.outputs_dir / "logs", settings.log_level):
            from autoflow.runs import Launcher, run_in_worker_thread

            launcher = Launcher(store, settings, trigger="manual")
            previous = signal.signal(signal.SIGTERM, _terminate)
            try:
                result = run_in_worker_thread(lambda: launcher.launch(run), "autoflow-trigger")
            except KeyboardInterrupt:
                store.interrupt(launcher.heartbeat.active, "interrupted: autoflow trigger was stopped before the run finished")
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
        app.error(result.outcome.error or "the run failed")
        return 1
    return 0
