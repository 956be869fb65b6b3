"""Entry point of ``autoflow`` / ``python -m autoflow``: parse arguments, dispatch, map errors to exits."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

from autoflow import __version__
from autoflow.cli.app import Abort, Application
from autoflow.errors import AutoFlowError

#: subcommand modules, in help order; each has add_parser(subparsers) and run(app, args) -> int
COMMANDS = ("run", "validate", "plan", "trigger", "backfill", "rerun", "cancel", "status", "db", "health", "worker", "graph")
#: what runs when no subcommand is given
DEFAULT_COMMAND = "run"
#: directory options every command takes, before or after its name: (option, help)
DIRECTORY_OPTIONS = (
    ("--inputs", "inputs directory (default: $AUTOFLOW_INPUTS_DIR)"),
    ("--outputs", "outputs directory (default: $AUTOFLOW_OUTPUTS_DIR)"),
)


class _Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a misspelt command instead of the list of choices."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            what = "command" if action.dest == "command" else "action"
            close = difflib.get_close_matches(str(value), list(action.choices), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the {what}s are: {', '.join(action.choices)}"
            self.exit(2, f"{self.prog}: error: unknown {what} '{value}'; {hint}\n")
        super()._check_value(action, value)


def _parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="autoflow",
        description="Run workflows of parametrised Jupyter notebooks for every new date of data. "
        "With no command, runs the service (same as 'autoflow run').",
    )
    parser.add_argument("--version", action="version", version=f"autoflow {__version__}")
    for option, help_text in DIRECTORY_OPTIONS:
        parser.add_argument(option, metavar="DIR", help=help_text)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in available.values():
        module.add_parser(commands)  # type: ignore[attr-defined]
    for sub in commands.choices.values():  # the directories work before or after the command
        for option, help_text in DIRECTORY_OPTIONS:
            sub.add_argument(option, metavar="DIR", default=argparse.SUPPRESS, help=help_text)
    return parser


def _modules() -> dict[str, object]:
    modules: dict[str, object] = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"autoflow.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"autoflow.cli.{name}":
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status.

    A reader that closes the pipe early (``autoflow status --json | head -2``) ends the output
    quietly: the rest goes to /dev/null and the command's own status stands (0 if it succeeded,
    its error status if not). A BrokenPipeError from anything else is an internal error.
    """
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ClosedReaderTolerant(sys.stdout), _ClosedReaderTolerant(sys.stderr)
    try:
        status = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    finally:
        sys.stdout, sys.stderr = streams


class _ClosedReaderTolerant:
    """A text stream whose output goes to /dev/null once the process reading it has closed the pipe.

    Only failures writing to this stream count as "the reader went away" (Python docs, "Note on
    SIGPIPE"); every other attribute is the wrapped stream's.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._discard()
            return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _discard(self) -> None:
        """Point the stream's file descriptor at /dev/null, so what is still buffered or yet to come is dropped."""
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file (captured in tests)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def _dispatch(argv: Sequence[str] | None) -> int:
    modules = _modules()
    args = _parser(modules).parse_args(argv)
    command = args.command or DEFAULT_COMMAND
    app = Application(inputs_override=args.inputs, outputs_override=args.outputs)
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
        _internal_error(app, exc)
        return 70


def _internal_error(app: Application, exc: Exception) -> None:
    if app.is_debug():
        traceback.print_exc()
    app.error(
        f"internal error ({type(exc).__name__}: {exc}); please report it with the output of "
        "the same command run with AUTOFLOW_LOG_LEVEL=DEBUG"
    )


if __name__ == "__main__":
    sys.exit(main())
