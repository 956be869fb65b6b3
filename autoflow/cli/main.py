"""Entry point of ``autoflow`` / ``python -m autoflow``: parse arguments, dispatch, map errors to exits."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from autoflow import __version__
from autoflow.cli.app import Abort, Application
from autoflow.errors import AutoFlowError

#: subcommand modules, in help order; each has add_parser(subparsers) and run(app, args) -> int
COMMANDS = ("run", "validate", "plan", "trigger", "status", "db", "health")
#: what runs when no subcommand is given
DEFAULT_COMMAND = "run"


def _parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoflow",
        description="Run workflows of parametrised Jupyter notebooks for every new date of data. "
        "With no command, runs the service (same as 'autoflow run').",
    )
    parser.add_argument("--version", action="version", version=f"autoflow {__version__}")
    parser.add_argument("--inputs", metavar="DIR", help="inputs directory (default: $AUTOFLOW_INPUTS_DIR)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in available.values():
        module.add_parser(commands)  # type: ignore[attr-defined]
    for sub in commands.choices.values():  # --inputs works before or after the command
        sub.add_argument("--inputs", metavar="DIR", default=argparse.SUPPRESS, help="inputs directory (default: $AUTOFLOW_INPUTS_DIR)")
    return parser


def _modules() -> dict[str, object]:
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"autoflow.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"autoflow.cli.{name}":
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    modules = _modules()
    args = _parser(modules).parse_args(argv)
    command = args.command or DEFAULT_COMMAND
    app = Application(inputs_override=args.inputs)
    if command not in modules:
        app.error(f"'{command}' is not available in this version of AutoFlow")
        return 2
    try:
        return int(modules[command].run(app, args))  # type: ignore[attr-defined]
    except Abort as abort:
        return abort.code
    except AutoFlowError as exc:
        app.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        app.error("interrupted")
        return 130
    except Exception as exc:  # a bug in AutoFlow, not the user's mistake
        if app.is_debug():
            traceback.print_exc()
        app.error(
            f"internal error ({type(exc).__name__}: {exc}); please report it with the output of "
            "the same command run with AUTOFLOW_LOG_LEVEL=DEBUG"
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
