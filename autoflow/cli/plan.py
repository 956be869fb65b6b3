"""``autoflow plan``: what the next tick would run, and why everything else is skipped."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence

from autoflow.cli.app import Application
from autoflow.parameters import to_json_safe
from autoflow.planning import BEFORE_FIRST_DATA, WAITING_FOR_DATA, SkippedRun

HELP = "dry run of the next tick: due runs and skip reasons (executes and claims nothing)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("plan", help=HELP, description=HELP)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--all", action="store_true", help="list every skipped candidate, not just a summary")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.logs import setup_logging
    from autoflow.scan import build_sources, check_source_settings, current_plan
    settings = app.settings
    # a dry run answers on stdout: the console log shows only what went wrong (or everything at DEBUG)
    setup_logging(settings.log_level if settings.log_level == "DEBUG" else "WARNING")
    config = app.load_config()
    check_source_settings(config, settings)  # name a missing variable or secret
    with app.read_history() as store:  # reads only: plan creates, migrates and claims nothing
        scan = current_plan(config, settings, store, build_sources(config, settings, store), detail=True)
        result = scan.plan
        no_history = store is None
        running = store.history(state="running") if store is not None and settings.work_pool else []
    if args.json:
        json.dump(
            {
                "due": [
                    {"workflow": r.workflow, "reference_date": r.reference_date.isoformat(), "parameters": to_json_safe(dict(r.parameters)),
                     "date_ranges": [[a.isoformat(), b.isoformat()] for a, b in r.date_ranges], "attempt": r.previous_attempt + 1, "reason": r.reason}
                    for r in result.due
                ],
                "skipped": [
                    {"workflow": s.workflow, "reference_date": s.reference_date.isoformat(), "parameters": to_json_safe(dict(s.parameters)),
                     "kind": s.kind, "reason": s.reason}
                    for s in result.skipped
                ],
            },
            sys.stdout,
            indent=2,
        )  # fmt: skip
        sys.stdout.write("\n")
        return _report_errors(app, scan.errors)
    width = max(shutil.get_terminal_size().columns, MIN_WIDTH)
    dates = sorted(result.available_dates)
    span = f" ({dates[0]} to {dates[-1]})" if dates else ""
    lines = [(f"{len(dates)} date(s) available{span}; {len(result.due)} run(s) due, {result.skipped_total} skipped.", 0)]
    if no_history:
        lines.append((f"No run history yet at {settings.db_url_masked}: every run would be its first attempt.", 0))
    for r in result.due:
        params = ", ".join(f"{k}={v}" for k, v in to_json_safe(dict(r.parameters)).items())
        lines.append((f"  due      {r.workflow} {r.reference_date}  attempt {r.previous_attempt + 1}: {r.reason}  {params}".rstrip(), INDENT))
    if args.all:
        lines += [(f"  skipped  {s.workflow} {s.reference_date}: {s.reason}", INDENT) for s in result.skipped]
    elif result.skipped:
        lines += [(line, INDENT) for line in summarise_skips(result.skipped)]
        lines.append(("  (use --all to list every skipped run)", INDENT))
    if settings.work_pool:
        from autoflow.cli.status import work_pool_summary

        pool_line = work_pool_summary(settings, running)
        if pool_line:
            lines.append((pool_line, 2))
    for text, indent in lines:
        print(wrap(text, width, indent))
    return _report_errors(app, scan.errors)


def _report_errors(app: Application, errors: Sequence[str]) -> int:
    """A source that could not be asked (its entries are missing from the plan): say so, exit 1."""
    for error in errors:
        app.error(f"{error} (the entries reading that source are not in this plan)")
    return 1 if errors else 0


#: a terminal narrower than this is treated as this wide
MIN_WIDTH = 40
#: where the continuation of a wrapped line starts (under the text after "  due      ")
INDENT = 11


def wrap(text: str, width: int, indent: int) -> str:
    """``text`` folded to ``width`` columns, continuation lines indented by ``indent``."""
    return textwrap.fill(text, width=width, subsequent_indent=" " * indent, break_on_hyphens=False, drop_whitespace=True)


def summarise_skips(skipped: Sequence[SkippedRun]) -> list[str]:
    """One line per workflow and kind of skip (per missing data for "waiting"), most frequent first."""
    kinds: Counter[tuple[str, str]] = Counter()
    first: dict[str, str] = {}  # workflow -> the first date its source offers (sources differ per entry)
    for s in skipped:
        if s.kind == BEFORE_FIRST_DATA:
            kinds[(s.workflow, BEFORE_FIRST_DATA)] += 1
            found = FIRST_DATE.search(s.reason)
            if found:
                first[s.workflow] = min(first.get(s.workflow, found.group(1)), found.group(1))
        else:
            kinds[(s.workflow, s.reason if s.kind == WAITING_FOR_DATA else s.reason.split(" (")[0])] += 1
    lines = []
    for (workflow, reason), n in kinds.most_common(20):
        if reason == BEFORE_FIRST_DATA:
            since = f" ({first[workflow]})" if workflow in first else ""
            lines.append(f"  not planned  {workflow}: {n} date(s) need data from before the first available date{since}")
        else:
            lines.append(f"  skipped  {workflow}: {n} × {reason}")
    return lines


#: the date in a BEFORE_FIRST_DATA skip's reason
FIRST_DATE = re.compile(r"first available date \((\d{4}-\d{2}-\d{2})\)")
