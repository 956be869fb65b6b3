"""``autoflow validate``: check workflows.yml and summarise it."""

from __future__ import annotations

import argparse
import datetime as dt

from autoflow.cli.app import Application, display_path
from autoflow.spec.models import AutoFlowConfig
from autoflow.spec.schedule import describe, next_tick

HELP = "check workflows.yml and every file it names; print a summary (exit 2 listing every problem)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("validate", help=HELP, description=HELP)
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="also list the notebook parameters workflows.yml does not pass (their defaults are used)",
    )  # fmt: skip


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(config: AutoFlowConfig, now: dt.datetime) -> str:
    """One paragraph: workflows, notebooks, reports, sensor entries, schedule and next tick."""
    parts = []
    for wf in config.workflows.values():
        reports = sum(1 for nb in wf.notebooks.values() if nb.output is not None)
        extra = f", {_plural(reports, 'PDF report')}" if reports else ""
        parts.append(f"'{wf.name}' ({_plural(len(wf.notebooks), 'notebook')}{extra})")
    sensor = config.sensor
    schedule = describe(sensor.schedule)
    if sensor.schedule is not None:
        schedule += f"; next tick {next_tick(sensor.schedule, now):%Y-%m-%d %H:%M} UTC"
    from autoflow.sources import source_registry

    source = source_registry.get(sensor.source.type).describe(sensor.source)
    own = [e for e in sensor.workflows if e.source is not None]
    if own:
        said = "; ".join(f"'{e.workflow_name}' waits for {source_registry.get(e.source.type).describe(e.source)}" for e in own if e.source is not None)
        source += f" ({_plural(len(own), 'entry')} with a source of {'its' if len(own) == 1 else 'their'} own: {said})"
    return (
        f"OK: {_plural(len(config.workflows), 'workflow')}: {', '.join(parts)}. "
        f"The sensor has {_plural(len(sensor.workflows), 'entry')} and checks {source} "
        f"{schedule}. {_policies(config)}"
    ).replace("entrys", "entries").rstrip()


def _policies(config: AutoFlowConfig) -> str:
    """The retry policy (when every entry has the same) and where notifications go."""
    from autoflow.spec.durations import describe_duration

    entries = config.sensor.workflows
    policies = {(e.max_attempts, e.retry_after) for e in entries}
    said = ""
    if len(policies) == 1:
        attempts, wait = next(iter(policies))
        retry = "on the next tick" if wait == 0 else f"{describe_duration(wait)} after a failure, doubling"
        said = f"A run gets {_plural(attempts, 'attempt')} (retried {retry})." if attempts > 1 else "A run gets 1 attempt (no retries)."
    elif policies:
        said = "Retry policies differ between entries."
    latest = sum(1 for e in entries if e.catch_up == "latest")
    if latest:
        said += f" {_plural(latest, 'entry')} catch{'es' if latest == 1 else ''} up with the latest date only.".replace("entrys", "entries")
    if config.notifications:
        said += f" Notifications go to {_plural(len(config.notifications), 'target')}."
    return said.strip()


def defaults_used(config: AutoFlowConfig) -> str:
    """Lines naming, per notebook, the parameters nothing passes (the notebook's default is used)."""
    lines = []
    for wf in config.workflows.values():
        for nb in wf.notebooks.values():
            if nb.defaulted_parameters:
                names = ", ".join(f"'{n}'" for n in nb.defaulted_parameters)
                lines.append(f"  {wf.name} / {nb.label} ({display_path(nb.path)}): {names}")
    if not lines:
        return "workflows.yml passes a value for every notebook parameter."
    return "\n".join(["Notebook parameters workflows.yml does not pass (the notebook's default is used):", *lines])


def run(app: Application, args: argparse.Namespace) -> int:
    config = app.load_config()
    print(summary(config, dt.datetime.now(dt.timezone.utc)))
    if getattr(args, "verbose", False):
        print(defaults_used(config))
    return 0
