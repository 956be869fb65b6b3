"""``autoflow plan``: what the next tick would run, and why everything else is skipped."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from autoflow.cli.app import Application
from autoflow.parameters import to_json_safe

HELP = "dry run of the next tick: due runs and skip reasons (executes and claims nothing)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("plan", help=HELP, description=HELP)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--all", action="store_true", help="list every skipped candidate, not just a summary")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.scan import current_plan
    from autoflow.sources import make_source
    from autoflow.store import RunStore

    app.setup_logging()
    config = app.load_config()
    settings = app.settings
    if config.sensor.source.type == "flowapi":
        settings.required_flowapi  # noqa: B018 - name the missing variable
    source = make_source(config.sensor.source, settings=settings, inputs_dir=config.inputs_dir, cdr_types=config.sensor.cdr_types)
    with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked) as store:
        store.upgrade()
        result = current_plan(config, settings, store, source, detail=True)
    if args.json:
        json.dump(
            {
                "due": [
                    {"workflow": r.workflow, "reference_date": r.reference_date.isoformat(), "parameters": to_json_safe(dict(r.parameters)),
                     "date_ranges": [[a.isoformat(), b.isoformat()] for a, b in r.date_ranges], "attempt": r.previous_attempt + 1, "reason": r.reason}
                    for r in result.due
                ],
                "skipped": [
                    {"workflow": s.workflow, "reference_date": s.reference_date.isoformat(), "parameters": to_json_safe(dict(s.parameters)), "reason": s.reason}
                    for s in result.skipped
                ],
            },
            sys.stdout,
            indent=2,
        )  # fmt: skip
        sys.stdout.write("\n")
        return 0
    print(f"{len(result.available_dates)} date(s) available; {len(result.due)} run(s) due, {result.skipped_total} skipped.")
    for r in result.due:
        params = ", ".join(f"{k}={v}" for k, v in to_json_safe(dict(r.parameters)).items())
        print(f"  due      {r.workflow} {r.reference_date}  {params}  attempt {r.previous_attempt + 1}: {r.reason}")
    if args.all:
        for s in result.skipped:
            print(f"  skipped  {s.workflow} {s.reference_date}: {s.reason}")
    elif result.skipped:
        kinds = Counter((s.workflow, s.reason if s.reason.startswith("waiting") else s.reason.split(" (")[0]) for s in result.skipped)
        for (workflow, reason), n in kinds.most_common(20):
            print(f"  skipped  {workflow}: {n} × {reason}")
        print("  (use --all to list every skipped run)")
    return 0
