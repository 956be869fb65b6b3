"""``autoflow graph WORKFLOW [-o FILE]``: draw a workflow's notebook dependency graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoflow.cli.app import Application

HELP = "draw a workflow's notebook dependency graph (DOT on stdout, or -o FILE.svg|.png|.dot)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("graph", help=HELP, description=HELP)
    parser.add_argument("workflow", help="a workflow name from workflows.yml")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the drawing here; its suffix (.svg, .png, .dot) is the format")


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.errors import UsageError
    from autoflow.graph import FORMATS, render

    config = app.load_config()
    workflow = config.workflows.get(args.workflow)
    if workflow is None:
        raise UsageError(f"unknown workflow '{args.workflow}'; workflows.yml defines: {', '.join(config.workflows)}")
    if args.output is None:
        sys.stdout.write(render(workflow, "dot").decode())
        return 0
    output = Path(args.output)
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"-o {args.output}: the file name must end in {', '.join('.' + f for f in FORMATS)}")
    drawing = render(workflow, fmt)
    try:
        output.write_bytes(drawing)
    except OSError as exc:
        app.abort(f"cannot write {output}: {exc.strerror}")
    print(output)
    return 0
